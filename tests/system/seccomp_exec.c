// seccomp_exec: applies the seccomp side of systemd/plantd.service the way systemd 252 does, then
// runs a program; used by tests/system/run-hardened (which compiles it: cc -O2 ... -lseccomp).
//
//   seccomp_exec [FILTERS] -- PROGRAM [ARG...]
//     Loads one seccomp filter per option, in the order systemd's exec code loads them, the
//     system call allow list last, then execve()s PROGRAM. No new privileges must already be set
//     (setpriv --no-new-privs), as systemd sets it before loading filters.
//       --address-families AF_INET,AF_INET6,AF_UNIX  RestrictAddressFamilies= (socket() else EAFNOSUPPORT)
//       --mdwe                                        MemoryDenyWriteExecute=yes
//       --restrict-realtime                           RestrictRealtime=yes
//       --restrict-suid-sgid                          RestrictSUIDSGID=yes
//       --restrict-namespaces                         RestrictNamespaces=yes
//       --deny FILE                                   EPERM for the system calls named in FILE
//                                                     (ProtectClock=, ProtectKernelModules=, ...)
//       --native                                      SystemCallArchitectures=native
//       --lock-personality                            LockPersonality=yes
//       --allow FILE                                  SystemCallFilter= allow list: the system calls
//                                                     named in FILE (one a line), the rest fail with
//       --errno N                                     this errno (SystemCallErrorNumber=, default EPERM)
//
//   seccomp_exec --private-users UID:GID -- PROGRAM [ARG...]
//     PrivateUsers=yes: clears the supplementary groups, enters a new user namespace where only
//     root and UID/GID are mapped (to themselves) and setgroups() is denied, then execve()s.
//     Must run as root. The map is written by a short-lived child still outside the namespace.
//
//   seccomp_exec --probe DIR
//     Run inside the sandbox: checks that what the unit forbids is refused (and that what plantd
//     needs still works), one line per check ("ok", "FAIL", "skip"); exit status 1 if any FAIL.
//     DIR is a directory the service may write (its state directory).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <linux/reboot.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <dirent.h>
#include <pthread.h>
#include <unistd.h>

static void die(const char* format, ...) {
    va_list args;
    va_start(args, format);
    fputs("seccomp_exec: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(126);
}

// A filter for the native architecture only, that lets through what it does not match, and lets
// other architectures through as well (they are the business of the --native filter), and that
// does not set no_new_privs itself: as systemd's seccomp_init_for_arch().
static scmp_filter_ctx new_filter(uint32_t default_action) {
    scmp_filter_ctx ctx = seccomp_init(default_action);
    if (!ctx) die("seccomp_init failed");
    if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ALLOW) < 0) die("seccomp_attr_set BADARCH");
    if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) < 0) die("seccomp_attr_set NNP");
    return ctx;
}

static void load(scmp_filter_ctx ctx, const char* what) {
    int r = seccomp_load(ctx);
    if (r < 0) die("loading the %s filter: %s (is no_new_privs set?)", what, strerror(-r));
    seccomp_release(ctx);
}

static void rule(scmp_filter_ctx ctx, uint32_t action, int nr, unsigned count, ...) {
    struct scmp_arg_cmp args[2];
    va_list list;
    va_start(list, count);
    for (unsigned i = 0; i < count && i < 2; i++) args[i] = va_arg(list, struct scmp_arg_cmp);
    va_end(list);
    int r = seccomp_rule_add_exact_array(ctx, action, nr, count, args);
    if (r < 0) die("adding a rule for system call %d: %s", nr, strerror(-r));
}

// Names from a file (one a line, # comments), resolved for the native architecture. Names this
// architecture does not have (the 32-bit variants, ...) are skipped, as systemd skips them.
static int read_syscalls(const char* path, int* out, int max) {
    FILE* in = fopen(path, "r");
    if (!in) die("cannot read %s: %s", path, strerror(errno));
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, in)) {
        line[strcspn(line, " \t\r\n#")] = 0;
        if (!line[0]) continue;
        int nr = seccomp_syscall_resolve_name(line);
        if (nr == __NR_SCMP_ERROR || nr < 0) continue;
        if (n == max) die("too many system calls in %s", path);
        out[n++] = nr;
    }
    fclose(in);
    return n;
}

static int address_family(const char* name) {
    static const struct { const char* name; int value; } known[] = {
        {"AF_UNIX", AF_UNIX},   {"AF_LOCAL", AF_LOCAL},     {"AF_INET", AF_INET},
        {"AF_INET6", AF_INET6}, {"AF_NETLINK", AF_NETLINK}, {"AF_PACKET", AF_PACKET},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(known[i].name, name) == 0) return known[i].value;
    die("unknown address family %s", name);
    return -1;
}

// RestrictAddressFamilies= with an allow list (seccomp_restrict_address_families()).
static void restrict_address_families(char* list) {
    int allowed[AF_MAX] = {0};
    int first = 0, last = 0;
    for (char* name = strtok(list, ", "); name; name = strtok(NULL, ", ")) {
        int af = address_family(name);
        allowed[af] = 1;
        if (first == 0 || af < first) first = af;
        if (af > last) last = af;
    }
    scmp_filter_ctx ctx = new_filter(SCMP_ACT_ALLOW);
    const uint32_t refuse = SCMP_ACT_ERRNO(EAFNOSUPPORT);
    rule(ctx, refuse, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_LT, first));
    rule(ctx, refuse, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_GT, last));
    for (int af = 1; af < AF_MAX; af++)
        if (!allowed[af] && af > first && af < last) rule(ctx, refuse, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, af));
    load(ctx, "RestrictAddressFamilies");
}

// MemoryDenyWriteExecute= (seccomp_memory_deny_write_execute(), x86-64): no mapping both
// writable and executable, no making a mapping executable later, no executable shared memory.
static void memory_deny_write_execute(void) {
    scmp_filter_ctx ctx = new_filter(SCMP_ACT_ALLOW);
    const uint32_t refuse = SCMP_ACT_ERRNO(EPERM);
    rule(ctx, refuse, SCMP_SYS(mmap), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC | PROT_WRITE, PROT_EXEC | PROT_WRITE));
    rule(ctx, refuse, SCMP_SYS(mprotect), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
    rule(ctx, refuse, SCMP_SYS(pkey_mprotect), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
    rule(ctx, refuse, SCMP_SYS(shmat), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC));
    load(ctx, "MemoryDenyWriteExecute");
}

// RestrictRealtime= (seccomp_restrict_realtime()): only SCHED_OTHER, SCHED_BATCH, SCHED_IDLE.
static void restrict_realtime(void) {
    scmp_filter_ctx ctx = new_filter(SCMP_ACT_ALLOW);
    const uint32_t refuse = SCMP_ACT_ERRNO(EPERM);
    const int max_policy = SCHED_IDLE;
    for (int p = 0; p < max_policy; p++)
        if (p != SCHED_OTHER && p != SCHED_BATCH && p != SCHED_IDLE)
            rule(ctx, refuse, SCMP_SYS(sched_setscheduler), 1, SCMP_A1(SCMP_CMP_EQ, p));
    rule(ctx, refuse, SCMP_SYS(sched_setscheduler), 1, SCMP_A1(SCMP_CMP_GT, max_policy));
    load(ctx, "RestrictRealtime");
}

// RestrictSUIDSGID= (seccomp_restrict_suid_sgid()): no file may get the set-user/group-ID bit.
static void restrict_suid_sgid(void) {
    scmp_filter_ctx ctx = new_filter(SCMP_ACT_ALLOW);
    const uint32_t refuse = SCMP_ACT_ERRNO(EPERM);
    const mode_t bits[] = {S_ISUID, S_ISGID};
    for (int i = 0; i < 2; i++) {
        const mode_t m = bits[i];
        rule(ctx, refuse, SCMP_SYS(chmod), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, m, m));
        rule(ctx, refuse, SCMP_SYS(fchmod), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, m, m));
        rule(ctx, refuse, SCMP_SYS(fchmodat), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, m, m));
        rule(ctx, refuse, SCMP_SYS(mkdir), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, m, m));
        rule(ctx, refuse, SCMP_SYS(mkdirat), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, m, m));
        rule(ctx, refuse, SCMP_SYS(mknod), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, m, m));
        rule(ctx, refuse, SCMP_SYS(mknodat), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, m, m));
        rule(ctx, refuse, SCMP_SYS(open), 2, SCMP_A1(SCMP_CMP_MASKED_EQ, O_CREAT, O_CREAT),
             SCMP_A2(SCMP_CMP_MASKED_EQ, m, m));
        rule(ctx, refuse, SCMP_SYS(openat), 2, SCMP_A2(SCMP_CMP_MASKED_EQ, O_CREAT, O_CREAT),
             SCMP_A3(SCMP_CMP_MASKED_EQ, m, m));
        rule(ctx, refuse, SCMP_SYS(creat), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, m, m));
    }
    // openat2() hides its flags in a structure: ENOSYS, so that callers fall back to openat().
    rule(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(openat2), 0);
    load(ctx, "RestrictSUIDSGID");
}

// RestrictNamespaces=yes (seccomp_restrict_namespaces() with nothing retained): setns() refused,
// unshare() and clone() refused with any namespace flag. As in systemd 252, clone3() is not
// filtered (its flags are behind a pointer).
static void restrict_namespaces(void) {
    static const unsigned long flags[] = {CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS,
                                          CLONE_NEWPID,    CLONE_NEWUSER, CLONE_NEWUTS};
    scmp_filter_ctx ctx = new_filter(SCMP_ACT_ALLOW);
    const uint32_t refuse = SCMP_ACT_ERRNO(EPERM);
    rule(ctx, refuse, SCMP_SYS(setns), 0);
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        rule(ctx, refuse, SCMP_SYS(unshare), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, flags[i], flags[i]));
        rule(ctx, refuse, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, flags[i], flags[i]));
    }
    load(ctx, "RestrictNamespaces");
}

static void deny_list(const char* path) {
    static int nrs[1024];
    int n = read_syscalls(path, nrs, 1024);
    scmp_filter_ctx ctx = new_filter(SCMP_ACT_ALLOW);
    for (int i = 0; i < n; i++) rule(ctx, SCMP_ACT_ERRNO(EPERM), nrs[i], 0);
    load(ctx, path);
}

// SystemCallArchitectures=native (seccomp_restrict_archs()): a filter without rules whose only
// architecture is the native one; a system call of another ABI (int 0x80 on x86-64) kills.
static void native_only(void) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) die("seccomp_init failed");
    if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) < 0) die("seccomp_attr_set NNP");
    load(ctx, "SystemCallArchitectures");
}

// LockPersonality= (seccomp_lock_personality()): personality() only with the current one.
static void lock_personality(void) {
    const int current = personality(0xffffffff);
    scmp_filter_ctx ctx = new_filter(SCMP_ACT_ALLOW);
    rule(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1, SCMP_A0(SCMP_CMP_NE, (scmp_datum_t)current));
    load(ctx, "LockPersonality");
}

// SystemCallFilter= as an allow list, SystemCallErrorNumber= for the rest.
static void allow_list(const char* path, int error) {
    static int nrs[1024];
    int n = read_syscalls(path, nrs, 1024);
    if (n < 50) die("%s: only %d system calls: not an allow list", path, n);
    scmp_filter_ctx ctx = new_filter(SCMP_ACT_ERRNO(error));
    for (int i = 0; i < n; i++) rule(ctx, SCMP_ACT_ALLOW, nrs[i], 0);
    load(ctx, "SystemCallFilter");
}

// PrivateUsers=yes, as systemd's setup_private_users(): maps root and uid/gid to themselves.
static void private_users(const char* ids) {
    unsigned uid, gid;
    if (sscanf(ids, "%u:%u", &uid, &gid) != 2) die("--private-users wants UID:GID, not %s", ids);
    if (geteuid() != 0) die("--private-users must run as root");
    if (setgroups(0, NULL) < 0) die("setgroups: %s", strerror(errno));
    int go[2], done[2];
    if (pipe(go) < 0 || pipe(done) < 0) die("pipe: %s", strerror(errno));
    const pid_t parent = getpid();
    const pid_t child = fork();
    if (child < 0) die("fork: %s", strerror(errno));
    if (child == 0) {
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) != 1) _exit(1);
        char path[64], map[128];
        const struct { const char* file; unsigned id; } maps[] = {{"uid_map", uid}, {"gid_map", gid}};
        snprintf(path, sizeof path, "/proc/%d/setgroups", (int)parent);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "deny\n", 5) != 5) _exit(2);
        close(fd);
        for (int i = 0; i < 2; i++) {
            if (maps[i].id == 0) snprintf(map, sizeof map, "0 0 1\n");
            else snprintf(map, sizeof map, "0 0 1\n%u %u 1\n", maps[i].id, maps[i].id);
            snprintf(path, sizeof path, "/proc/%d/%s", (int)parent, maps[i].file);
            fd = open(path, O_WRONLY | O_CLOEXEC);
            if (fd < 0 || write(fd, map, strlen(map)) != (ssize_t)strlen(map)) _exit(3);
            close(fd);
        }
        _exit(0);
    }
    close(go[0]);
    if (unshare(CLONE_NEWUSER) < 0) die("unshare(CLONE_NEWUSER): %s", strerror(errno));
    if (write(go[1], "x", 1) != 1) die("pipe write: %s", strerror(errno));
    close(go[1]);
    int status = 0;
    if (waitpid(child, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("writing the user namespace maps failed (child status %d)", status);
}

// ---------------------------------------------------------------------------------------------
// --probe

static int failures = 0;

static void report(int good, const char* what, const char* detail) {
    printf("%s %s%s%s\n", good ? "ok  " : "FAIL", what, detail && *detail ? ": " : "", detail ? detail : "");
    if (!good) failures++;
}

// A call that must fail with `expected`: prints what happened.
static void refused(const char* what, long result, int error, int expected) {
    char detail[128];
    if (result >= 0) snprintf(detail, sizeof detail, "succeeded, expected %s", strerrorname_np(expected));
    else snprintf(detail, sizeof detail, "%s%s", strerrorname_np(error),
                  error == expected ? "" : " (unexpected)");
    report(result < 0 && error == expected, what, detail);
}

static void allowed(const char* what, long result, int error) {
    report(result >= 0, what, result >= 0 ? "works" : strerrorname_np(error));
}

#define REFUSED(what, expected, call)           \
    do {                                        \
        errno = 0;                              \
        long r_ = (long)(call);                 \
        refused(what, r_, errno, expected);     \
    } while (0)
#define ALLOWED(what, call)                     \
    do {                                        \
        errno = 0;                              \
        long r_ = (long)(call);                 \
        allowed(what, r_, errno);               \
    } while (0)

static void* thread_main(void* arg) { return arg; }

static void status_field(const char* name, const char* expected) {
    FILE* in = fopen("/proc/self/status", "r");
    char line[256], detail[300] = "field missing";
    int good = 0;
    size_t length = strlen(name);
    while (in && fgets(line, sizeof line, in)) {
        if (strncmp(line, name, length) == 0 && line[length] == ':') {
            char* value = line + length + 1;
            value += strspn(value, " \t");
            value[strcspn(value, "\n")] = 0;
            good = strcmp(value, expected) == 0;
            snprintf(detail, sizeof detail, "%s%s%s", value, good ? "" : ", expected ", good ? "" : expected);
            break;
        }
    }
    if (in) fclose(in);
    char what[64];
    snprintf(what, sizeof what, "/proc/self/status %s", name);
    report(good, what, detail);
}

static int probe(const char* dir) {
    char path[PATH_MAX], detail[PATH_MAX + 128];
    setvbuf(stdout, NULL, _IOLBF, 0);

    // Identity, capabilities, seccomp.
    snprintf(detail, sizeof detail, "uid %u gid %u", (unsigned)getuid(), (unsigned)getgid());
    report(getuid() != 0 && geteuid() != 0 && getgid() != 0, "runs as an unprivileged user", detail);
    status_field("CapInh", "0000000000000000");
    status_field("CapPrm", "0000000000000000");
    status_field("CapEff", "0000000000000000");
    status_field("CapBnd", "0000000000000000");
    status_field("CapAmb", "0000000000000000");
    status_field("NoNewPrivs", "1");
    status_field("Seccomp", "2");
    status_field("Groups", "");
    status_field("Umask", "0027");

    // SystemCallFilter=@system-service ~@privileged ~@resources: calls an unprivileged process
    // may normally make, so that only the filter can refuse them.
    REFUSED("setpriority() (@resources)", EPERM, setpriority(PRIO_PROCESS, 0, 19));
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    sched_getaffinity(0, sizeof cpus, &cpus);
    REFUSED("sched_setaffinity() (@resources)", EPERM, syscall(SYS_sched_setaffinity, 0, sizeof cpus, &cpus));
    struct rlimit core = {0, 0};
    REFUSED("setrlimit() (@resources)", EPERM, syscall(SYS_setrlimit, RLIMIT_CORE, &core));
    REFUSED("setuid(own uid) (@privileged: @setuid)", EPERM, syscall(SYS_setuid, getuid()));
    REFUSED("setgroups() (@privileged)", EPERM, syscall(SYS_setgroups, 0, NULL));
    snprintf(path, sizeof path, "%s/probe-file", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        snprintf(detail, sizeof detail, "%s: %s", path, strerrorname_np(errno));
        report(0, "create a file in the state directory", detail);
    } else {
        report(1, "create a file in the state directory", path);
        REFUSED("fchown(own file, unchanged) (@privileged: @chown)", EPERM, syscall(SYS_fchown, fd, -1, -1));
        struct stat st;
        fstat(fd, &st);
        snprintf(detail, sizeof detail, "mode %04o for open(0666)", (unsigned)(st.st_mode & 07777));
        report((st.st_mode & 07777) == 0640, "umask 0027 applies", detail);
        ALLOWED("fdatasync() (@sync)", fdatasync(fd));
        ALLOWED("chmod(own file, 0600)", fchmod(fd, 0600));
        // RestrictSUIDSGID=
        REFUSED("fchmod(own file, 04755) (RestrictSUIDSGID)", EPERM, fchmod(fd, 04755));
        REFUSED("chmod(own file, 02755) (RestrictSUIDSGID)", EPERM, chmod(path, 02755));
        close(fd);
        unlink(path);
    }
    struct open_how how = {.flags = O_RDONLY};
    REFUSED("openat2() (RestrictSUIDSGID)", ENOSYS, syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof how));
    REFUSED("ptrace(PTRACE_TRACEME) (@debug)", EPERM, syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0));
    REFUSED("mount() (@mount)", EPERM, mount("none", "/tmp", "tmpfs", 0, NULL));
    REFUSED("reboot() (@reboot)", EPERM, syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
                                                  LINUX_REBOOT_CMD_CAD_OFF, NULL));
    REFUSED("sethostname() (ProtectHostname)", EPERM, sethostname("x", 1));
    REFUSED("settimeofday() (ProtectClock: @clock)", EPERM, syscall(SYS_settimeofday, NULL, NULL));
    REFUSED("init_module() (ProtectKernelModules: @module)", EPERM, syscall(SYS_init_module, NULL, 0, ""));
    REFUSED("syslog() (ProtectKernelLogs)", EPERM, syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0));
    REFUSED("ioperm() (PrivateDevices: @raw-io)", EPERM, syscall(SYS_ioperm, 0x80, 1, 1));

    // MemoryDenyWriteExecute=
    REFUSED("mmap(PROT_WRITE|PROT_EXEC) (MemoryDenyWriteExecute)", EPERM,
            (long)mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    void* page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    report(page != MAP_FAILED, "mmap(PROT_READ|PROT_WRITE)", page != MAP_FAILED ? "works" : strerrorname_np(errno));
    if (page != MAP_FAILED)
        REFUSED("mprotect(PROT_EXEC) of a writable page (MemoryDenyWriteExecute)", EPERM,
                mprotect(page, 4096, PROT_READ | PROT_EXEC));

    // LockPersonality=
    REFUSED("personality(PER_LINUX32) (LockPersonality)", EPERM, personality(PER_LINUX32));

    // RestrictNamespaces=
    REFUSED("unshare(CLONE_NEWUSER) (RestrictNamespaces)", EPERM, unshare(CLONE_NEWUSER));
    REFUSED("unshare(CLONE_NEWNS) (RestrictNamespaces)", EPERM, unshare(CLONE_NEWNS));
    REFUSED("setns() (RestrictNamespaces)", EPERM, setns(-1, 0));

    // RestrictRealtime=
    struct sched_param priority = {.sched_priority = 1};
    REFUSED("sched_setscheduler(SCHED_FIFO) (RestrictRealtime, @resources)", EPERM,
            sched_setscheduler(0, SCHED_FIFO, &priority));

    // RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
    int s;
    REFUSED("socket(AF_NETLINK) (RestrictAddressFamilies)", EAFNOSUPPORT,
            s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0));
    REFUSED("socket(AF_PACKET) (RestrictAddressFamilies)", EAFNOSUPPORT,
            s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
    errno = 0;
    s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    allowed("socket(AF_INET)", s, errno);
    if (s >= 0) close(s);
    s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    allowed("socket(AF_UNIX)", s, errno);
    if (s >= 0) close(s);

    // What plantd's event loops and threads need.
    errno = 0;
    s = epoll_create1(EPOLL_CLOEXEC);
    allowed("epoll_create1()", s, errno);
    if (s >= 0) close(s);
    s = eventfd(0, EFD_CLOEXEC);
    allowed("eventfd()", s, errno);
    if (s >= 0) close(s);
    s = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    allowed("timerfd_create()", s, errno);
    if (s >= 0) close(s);
    pthread_t thread;
    int e = pthread_create(&thread, NULL, thread_main, NULL);
    report(e == 0, "pthread_create()", e == 0 ? "works" : strerrorname_np(e));
    if (e == 0) pthread_join(thread, NULL);
    char random[16];
    ALLOWED("getrandom()", getrandom(random, sizeof random, 0));

    // SystemCallArchitectures=native: an i386 system call (int 0x80) must kill the process.
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        long result;
        __asm__ volatile("int $0x80" : "=a"(result) : "a"(20L /* i386 getpid */) : "memory");
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
        report(1, "i386 system call (SystemCallArchitectures=native)", "killed by SIGSYS");
    else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV)
        printf("skip i386 system call (SystemCallArchitectures=native): this kernel has no i386 entry\n");
    else {
        snprintf(detail, sizeof detail, "child status %#x", status);
        report(0, "i386 system call (SystemCallArchitectures=native)", detail);
    }

    // File system view (as the service user; the read-only mounts are checked as root by
    // run-hardened before it drops privileges).
    DIR* tmp = opendir("/tmp");
    int entries = 0;
    for (struct dirent* d; tmp && (d = readdir(tmp));)
        if (strcmp(d->d_name, ".") && strcmp(d->d_name, "..")) entries++;
    if (tmp) closedir(tmp);
    snprintf(detail, sizeof detail, "%d entries (only the test directory)", entries);
    report(entries == 1, "private /tmp (PrivateTmp)", detail);
    ALLOWED("write /tmp (PrivateTmp)", (fd = open("/tmp/probe", O_WRONLY | O_CREAT | O_CLOEXEC, 0600)));
    if (fd >= 0) { close(fd); unlink("/tmp/probe"); }
    REFUSED("open /root (ProtectHome)", EACCES, open("/root", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (access("/home", F_OK) == 0)
        REFUSED("open /home (ProtectHome)", EACCES, open("/home", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REFUSED("/dev/kmsg absent (PrivateDevices, ProtectKernelLogs)", ENOENT, open("/dev/kmsg", O_RDONLY | O_CLOEXEC));
    REFUSED("/dev/mem absent (PrivateDevices)", ENOENT, open("/dev/mem", O_RDONLY | O_CLOEXEC));
    ALLOWED("open /dev/null", (fd = open("/dev/null", O_RDWR | O_CLOEXEC)));
    if (fd >= 0) close(fd);
    DIR* proc = opendir("/proc");
    int others = 0, mine = 0;
    for (struct dirent* d; proc && (d = readdir(proc));) {
        if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
        struct stat st;
        snprintf(path, sizeof path, "/proc/%s", d->d_name);
        if (stat(path, &st) == 0 && st.st_uid == getuid()) mine++;
        else others++;
    }
    if (proc) closedir(proc);
    snprintf(detail, sizeof detail, "%d own processes, %d of other users", mine, others);
    report(mine > 0 && others == 0, "/proc shows only own processes (ProtectProc=invisible)", detail);

    printf("%s: %d failure(s)\n", failures ? "FAIL" : "ok  ", failures);
    return failures ? 1 : 0;
}

int main(int argc, char** argv) {
    if (argc == 3 && strcmp(argv[1], "--probe") == 0) return probe(argv[2]);
    int i = 1, error = EPERM;
    // Filters are collected first, then loaded in systemd's order.
    const char* families = NULL;
    const char* allow = NULL;
    const char* deny[8];
    int denies = 0, mdwe = 0, realtime = 0, sxid = 0, namespaces = 0, native = 0, lock = 0;
    const char* users = NULL;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char* a = argv[i];
        const int more = i + 1 < argc;
        if (strcmp(a, "--address-families") == 0 && more) families = argv[++i];
        else if (strcmp(a, "--mdwe") == 0) mdwe = 1;
        else if (strcmp(a, "--restrict-realtime") == 0) realtime = 1;
        else if (strcmp(a, "--restrict-suid-sgid") == 0) sxid = 1;
        else if (strcmp(a, "--restrict-namespaces") == 0) namespaces = 1;
        else if (strcmp(a, "--deny") == 0 && more && denies < 8) deny[denies++] = argv[++i];
        else if (strcmp(a, "--native") == 0) native = 1;
        else if (strcmp(a, "--lock-personality") == 0) lock = 1;
        else if (strcmp(a, "--allow") == 0 && more) allow = argv[++i];
        else if (strcmp(a, "--errno") == 0 && more) error = atoi(argv[++i]);
        else if (strcmp(a, "--private-users") == 0 && more) users = argv[++i];
        else die("unknown or incomplete option %s", a);
    }
    if (i >= argc - 1) die("usage: seccomp_exec [OPTIONS] -- PROGRAM [ARG...] | seccomp_exec --probe DIR");
    if (users) private_users(users);
    if (families) restrict_address_families(strdup(families));
    if (mdwe) memory_deny_write_execute();
    if (realtime) restrict_realtime();
    if (sxid) restrict_suid_sgid();
    if (namespaces) restrict_namespaces();
    for (int d = 0; d < denies; d++) deny_list(deny[d]);
    if (native) native_only();
    if (lock) lock_personality();
    if (allow) allow_list(allow, error);
    execv(argv[i + 1], argv + i + 1);
    die("execv %s: %s", argv[i + 1], strerror(errno));
    return 126;
}
