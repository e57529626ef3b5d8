// The seccomp filters of seccomp_exec (see seccomp_exec.c), one function per setting of
// systemd/plantd.service, each built and loaded as systemd 252's seccomp-util.c does it (the
// function names there are given with each). seccomp_exec.c's main() calls them in the order
// systemd's exec code loads the filters, the SystemCallFilter= allow list last.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "seccomp_exec.h"

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
    static const struct {
        const char* name;
        int value;
    } known[] = {
        {"AF_UNIX", AF_UNIX},   {"AF_LOCAL", AF_LOCAL},     {"AF_INET", AF_INET},
        {"AF_INET6", AF_INET6}, {"AF_NETLINK", AF_NETLINK}, {"AF_PACKET", AF_PACKET},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(known[i].name, name) == 0) return known[i].value;
    die("unknown address family %s", name);
    return -1;
}

// RestrictAddressFamilies= with an allow list (seccomp_restrict_address_families()).
void restrict_address_families(char* list) {
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
        if (!allowed[af] && af > first && af < last)
            rule(ctx, refuse, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, af));
    load(ctx, "RestrictAddressFamilies");
}

// MemoryDenyWriteExecute= (seccomp_memory_deny_write_execute(), x86-64): no mapping both
// writable and executable, no making a mapping executable later, no executable shared memory.
void memory_deny_write_execute(void) {
    scmp_filter_ctx ctx = new_filter(SCMP_ACT_ALLOW);
    const uint32_t refuse = SCMP_ACT_ERRNO(EPERM);
    rule(ctx, refuse, SCMP_SYS(mmap), 1,
         SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC | PROT_WRITE, PROT_EXEC | PROT_WRITE));
    rule(ctx, refuse, SCMP_SYS(mprotect), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
    rule(ctx, refuse, SCMP_SYS(pkey_mprotect), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
    rule(ctx, refuse, SCMP_SYS(shmat), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC));
    load(ctx, "MemoryDenyWriteExecute");
}

// RestrictRealtime= (seccomp_restrict_realtime()): only SCHED_OTHER, SCHED_BATCH, SCHED_IDLE.
void restrict_realtime(void) {
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
void restrict_suid_sgid(void) {
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
void restrict_namespaces(void) {
    static const unsigned long flags[] = {CLONE_NEWCGROUP, CLONE_NEWIPC,  CLONE_NEWNET, CLONE_NEWNS,
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

void deny_list(const char* path) {
    static int nrs[1024];
    int n = read_syscalls(path, nrs, 1024);
    scmp_filter_ctx ctx = new_filter(SCMP_ACT_ALLOW);
    for (int i = 0; i < n; i++) rule(ctx, SCMP_ACT_ERRNO(EPERM), nrs[i], 0);
    load(ctx, path);
}

// SystemCallArchitectures=native (seccomp_restrict_archs()): a filter without rules whose only
// architecture is the native one; a system call of another ABI (int 0x80 on x86-64) kills.
void native_only(void) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) die("seccomp_init failed");
    if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) < 0) die("seccomp_attr_set NNP");
    load(ctx, "SystemCallArchitectures");
}

// LockPersonality= (seccomp_lock_personality()): personality() only with the current one.
void lock_personality(void) {
    const int current = personality(0xffffffff);
    scmp_filter_ctx ctx = new_filter(SCMP_ACT_ALLOW);
    rule(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1, SCMP_A0(SCMP_CMP_NE, (scmp_datum_t)current));
    load(ctx, "LockPersonality");
}

// SystemCallFilter= as an allow list, SystemCallErrorNumber= for the rest.
void allow_list(const char* path, int error) {
    static int nrs[1024];
    int n = read_syscalls(path, nrs, 1024);
    if (n < 50) die("%s: only %d system calls: not an allow list", path, n);
    scmp_filter_ctx ctx = new_filter(SCMP_ACT_ERRNO(error));
    for (int i = 0; i < n; i++) rule(ctx, SCMP_ACT_ALLOW, nrs[i], 0);
    load(ctx, "SystemCallFilter");
}
