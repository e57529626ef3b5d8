// What the three source files of the seccomp_exec helper share (see seccomp_exec.c).
#ifndef PLANTD_TESTS_SYSTEM_SECCOMP_EXEC_H
#define PLANTD_TESTS_SYSTEM_SECCOMP_EXEC_H

// Prints "seccomp_exec: " and the message on stderr, exits with status 126 (seccomp_exec.c).
void die(const char* format, ...) __attribute__((noreturn, format(printf, 1, 2)));

// One seccomp filter each, loaded at once (seccomp_filters.c). no_new_privs must already be set.
void restrict_address_families(char* list);    // RestrictAddressFamilies=, "AF_INET,AF_UNIX,..." (modified)
void memory_deny_write_execute(void);          // MemoryDenyWriteExecute=yes
void restrict_realtime(void);                  // RestrictRealtime=yes
void restrict_suid_sgid(void);                 // RestrictSUIDSGID=yes
void restrict_namespaces(void);                // RestrictNamespaces=yes
void deny_list(const char* path);              // EPERM for the system calls named in the file
void native_only(void);                        // SystemCallArchitectures=native
void lock_personality(void);                   // LockPersonality=yes
void allow_list(const char* path, int error);  // SystemCallFilter= allow list, SystemCallErrorNumber=

// --probe DIR (seccomp_probe.c): the exit status, 1 if any check failed.
int probe(const char* dir);

#endif
