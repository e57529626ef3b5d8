// seccomp_exec: applies the seccomp side of systemd/plantd.service the way systemd 252 does, then
// runs a program; used by tests/system/run-hardened, which compiles it from three files:
//   cc -O2 -Wall seccomp_exec.c seccomp_filters.c seccomp_probe.c -lseccomp -lpthread
//   seccomp_exec.c     this file: the options, --private-users, and the order the filters load in
//   seccomp_filters.c  the seccomp filters themselves, one function per unit setting
//   seccomp_probe.c    --probe, the checks run inside the sandbox
//   seccomp_exec.h     what the three share
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
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "seccomp_exec.h"

void die(const char* format, ...) {
    va_list args;
    va_start(args, format);
    fputs("seccomp_exec: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(126);
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
        const struct {
            const char* file;
            unsigned id;
        } maps[] = {{"uid_map", uid}, {"gid_map", gid}};
        snprintf(path, sizeof path, "/proc/%d/setgroups", (int)parent);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "deny\n", 5) != 5) _exit(2);
        close(fd);
        for (int i = 0; i < 2; i++) {
            if (maps[i].id == 0)
                snprintf(map, sizeof map, "0 0 1\n");
            else
                snprintf(map, sizeof map, "0 0 1\n%u %u 1\n", maps[i].id, maps[i].id);
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
        if (strcmp(a, "--address-families") == 0 && more)
            families = argv[++i];
        else if (strcmp(a, "--mdwe") == 0)
            mdwe = 1;
        else if (strcmp(a, "--restrict-realtime") == 0)
            realtime = 1;
        else if (strcmp(a, "--restrict-suid-sgid") == 0)
            sxid = 1;
        else if (strcmp(a, "--restrict-namespaces") == 0)
            namespaces = 1;
        else if (strcmp(a, "--deny") == 0 && more && denies < 8)
            deny[denies++] = argv[++i];
        else if (strcmp(a, "--native") == 0)
            native = 1;
        else if (strcmp(a, "--lock-personality") == 0)
            lock = 1;
        else if (strcmp(a, "--allow") == 0 && more)
            allow = argv[++i];
        else if (strcmp(a, "--errno") == 0 && more)
            error = atoi(argv[++i]);
        else if (strcmp(a, "--private-users") == 0 && more)
            users = argv[++i];
        else
            die("unknown or incomplete option %s", a);
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
