// seccomp_exec --probe DIR (see seccomp_exec.c): run inside the sandbox as the service user,
// checks that what the unit forbids is refused (and that what plantd needs still works), one line
// per check ("ok", "FAIL", "skip"); exit status 1 if any FAIL. DIR is a directory the service may
// write (its state directory). Where a check expects a specific value (umask 0027, the address
// families, ...), it is the one systemd/plantd.service sets.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <linux/reboot.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "seccomp_exec.h"

static int failures = 0;

static void report(int good, const char* what, const char* detail) {
    printf("%s %s%s%s\n", good ? "ok  " : "FAIL", what, detail && *detail ? ": " : "", detail ? detail : "");
    if (!good) failures++;
}

// A call that must fail with `expected`: prints what happened.
static void refused(const char* what, long result, int error, int expected) {
    char detail[128];
    if (result >= 0)
        snprintf(detail, sizeof detail, "succeeded, expected %s", strerrorname_np(expected));
    else
        snprintf(detail, sizeof detail, "%s%s", strerrorname_np(error),
                 error == expected ? "" : " (unexpected)");
    report(result < 0 && error == expected, what, detail);
}

static void allowed(const char* what, long result, int error) {
    report(result >= 0, what, result >= 0 ? "works" : strerrorname_np(error));
}

#define REFUSED(what, expected, call)       \
    do {                                    \
        errno = 0;                          \
        long r_ = (long)(call);             \
        refused(what, r_, errno, expected); \
    } while (0)
#define ALLOWED(what, call)       \
    do {                          \
        errno = 0;                \
        long r_ = (long)(call);   \
        allowed(what, r_, errno); \
    } while (0)

static void* thread_main(void* arg) {
    return arg;
}

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

int probe(const char* dir) {
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
    REFUSED("reboot() (@reboot)", EPERM,
            syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_CAD_OFF, NULL));
    REFUSED("sethostname() (ProtectHostname)", EPERM, sethostname("x", 1));
    REFUSED("settimeofday() (ProtectClock: @clock)", EPERM, syscall(SYS_settimeofday, NULL, NULL));
    REFUSED("init_module() (ProtectKernelModules: @module)", EPERM, syscall(SYS_init_module, NULL, 0, ""));
    REFUSED("syslog() (ProtectKernelLogs)", EPERM, syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0));
    REFUSED("ioperm() (PrivateDevices: @raw-io)", EPERM, syscall(SYS_ioperm, 0x80, 1, 1));

    // MemoryDenyWriteExecute=
    REFUSED("mmap(PROT_WRITE|PROT_EXEC) (MemoryDenyWriteExecute)", EPERM,
            (long)mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    void* page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    report(page != MAP_FAILED, "mmap(PROT_READ|PROT_WRITE)",
           page != MAP_FAILED ? "works" : strerrorname_np(errno));
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
    // run-hardened's sandbox-setup before it drops privileges).
    DIR* tmp = opendir("/tmp");
    int entries = 0;
    for (struct dirent* d; tmp && (d = readdir(tmp));)
        if (strcmp(d->d_name, ".") && strcmp(d->d_name, "..")) entries++;
    if (tmp) closedir(tmp);
    snprintf(detail, sizeof detail, "%d entries (only the test directory)", entries);
    report(entries == 1, "private /tmp (PrivateTmp)", detail);
    ALLOWED("write /tmp (PrivateTmp)", (fd = open("/tmp/probe", O_WRONLY | O_CREAT | O_CLOEXEC, 0600)));
    if (fd >= 0) {
        close(fd);
        unlink("/tmp/probe");
    }
    REFUSED("open /root (ProtectHome)", EACCES, open("/root", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (access("/home", F_OK) == 0)
        REFUSED("open /home (ProtectHome)", EACCES, open("/home", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REFUSED("/dev/kmsg absent (PrivateDevices, ProtectKernelLogs)", ENOENT,
            open("/dev/kmsg", O_RDONLY | O_CLOEXEC));
    REFUSED("/dev/mem absent (PrivateDevices)", ENOENT, open("/dev/mem", O_RDONLY | O_CLOEXEC));
    ALLOWED("open /dev/null", (fd = open("/dev/null", O_RDWR | O_CLOEXEC)));
    if (fd >= 0) close(fd);
    DIR* proc = opendir("/proc");
    int others = 0, mine = 0;
    for (struct dirent* d; proc && (d = readdir(proc));) {
        if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
        struct stat st;
        snprintf(path, sizeof path, "/proc/%s", d->d_name);
        if (stat(path, &st) == 0 && st.st_uid == getuid())
            mine++;
        else
            others++;
    }
    if (proc) closedir(proc);
    snprintf(detail, sizeof detail, "%d own processes, %d of other users", mine, others);
    report(mine > 0 && others == 0, "/proc shows only own processes (ProtectProc=invisible)", detail);

    printf("%s: %d failure(s)\n", failures ? "FAIL" : "ok  ", failures);
    return failures ? 1 : 0;
}
