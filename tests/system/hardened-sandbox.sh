# shellcheck shell=bash disable=SC2034,SC2154
# The sandbox of tests/system/run-hardened, which sources this file after it has made the test
# directory $T (and set $repo, $unit, $binary, $test_user, say and fail): reading the unit's
# settings, and building from them the sandbox's ingredients in $T. run-hardened calls, in order:
#   prepare_sandbox_files  directories, seccomp_exec compiled from seccomp_exec.c, seccomp_filters.c
#                          and seccomp_probe.c, plantd copied to $T/bin/plantd
#   resolve_unit_settings  sets filters (seccomp_exec's options, the allow list in $T/filters),
#                          umask_value, nofile, watchdog_usec, state_mode, runtime_mode, private_users
#   create_service_user    the system user $test_user; sets svc_uid, svc_gid; $T/state its own
#   install_sandbox_setup  $T/bin/sandbox-setup (tests/system/sandbox-setup) and its environment
# then runs commands in the sandbox with: sandbox COMMAND [ARG...]
#
# What the sandbox is made of, setting by setting (the unit file is read for the system call filter,
# the error number, the address families, UMask=, LimitNOFILE=, WatchdogSec= and the directory modes;
# the mounts and the exec chain are sandbox-setup's):
#   User=/Group=             a system user plantd-test (created if missing, left in place)
#   PrivateUsers=yes         a user namespace mapping only root and that user (seccomp_exec --private-users)
#   CapabilityBoundingSet=, AmbientCapabilities=, NoNewPrivileges=yes
#                            setpriv --bounding-set=-all --inh-caps=-all --ambient-caps=-all --no-new-privs
#   SystemCallFilter=, SystemCallErrorNumber=, SystemCallArchitectures=, MemoryDenyWriteExecute=,
#   LockPersonality=, RestrictNamespaces=, RestrictRealtime=, RestrictSUIDSGID=,
#   RestrictAddressFamilies=, and the system call parts of ProtectClock=, ProtectKernelModules=,
#   ProtectKernelLogs=, ProtectKernelTunables=, ProtectHostname=, PrivateDevices=
#                            seccomp filters loaded by seccomp_exec (seccomp_filters.c) as systemd 252 does
#   ProtectSystem=strict     every mount read-only (mount -o remount,bind,ro) but the state directory,
#                            the runtime directory, /tmp, /var/tmp and the API file systems
#   StateDirectory=          <tmp>/state (bind-mounted writable); RuntimeDirectory= /run/plantd (an
#                            overlay on /run, so that nothing is created on the host)
#   PrivateTmp=              fresh tmpfs on /tmp and /var/tmp (the test directory is carried along)
#   PrivateDevices=          a /dev with null, zero, full, random, urandom, tty, pts, shm only
#   ProtectHome=             /home, /root, /run/user replaced by an inaccessible directory
#   ProtectKernelTunables=, ProtectKernelLogs=, ProtectKernelModules=, ProtectControlGroups=
#                            the /proc and /sys paths systemd hides or makes read-only
#   ProtectProc=invisible    /proc mounted with hidepid=invisible in a new PID namespace
#   ProtectHostname=, PrivateIPC=  new UTS and IPC namespaces
#   UMask=, LimitNOFILE=     umask and ulimit -n (LimitNOFILE is capped by this machine's hard limit)
#   Type=notify, WatchdogSec= NOTIFY_SOCKET and WATCHDOG_USEC point at a datagram socket of run-hardened
# Not reproduced (they need systemd as PID 1 and a cgroup of the service): MemoryMax=,
# DevicePolicy=closed (the private /dev stands in for it), RemoveIPC= and the credentials directory.

# --- What the unit says -------------------------------------------------------------------------------
# Every value of a [Service] key, in file order.
unit_values() {
  awk -v key="$1" '/^\[/ { in_service = ($0 == "[Service]") }
                   in_service && index($0, key "=") == 1 { print substr($0, length(key) + 2) }' "$unit"
}
unit_value() { unit_values "$1" | tail -n 1; }
unit_yes() { case "$(unit_value "$1")" in yes|true|on|1) return 0 ;; *) return 1 ;; esac; }
# Seconds of a systemd time span such as 30s, 2min, 1h (enough for WatchdogSec=).
seconds_of() {
  local v=$1
  case "$v" in *min) echo $(( ${v%min} * 60 )) ;; *ms) echo 1 ;; *s) echo "${v%s}" ;; *h) echo $(( ${v%h} * 3600 )) ;; *) echo "$v" ;; esac
}
# The system calls of a group (or a single name), groups expanded recursively.
expand_syscalls() {
  local item=${1%%:*}
  if [[ $item != @* ]]; then echo "$item"; return; fi
  systemd-analyze syscall-filter --no-pager "$item" | awk 'NR > 1 && NF && $1 !~ /^#/ { print $1 }' |
    while read -r entry; do expand_syscalls "$entry"; done
}
# SystemCallFilter= resolved as systemd does: the first assignment decides allow or deny list (an
# allow list starts with @default), later ones add (plain) or remove (~) names; "" resets.
resolve_syscall_filter() {
  local -A set=()
  local mode="" value invert item name
  while IFS= read -r value; do
    if [ -z "$value" ]; then set=(); mode=""; continue; fi
    invert=0
    if [[ $value == "~"* ]]; then invert=1; value=${value#\~}; fi
    if [ -z "$mode" ]; then
      if [ "$invert" = 0 ]; then mode=allow; for name in $(expand_syscalls @default); do set[$name]=1; done
      else mode=deny; fi
    fi
    for item in $value; do
      for name in $(expand_syscalls "$item"); do
        if { [ "$mode" = allow ] && [ "$invert" = 0 ]; } || { [ "$mode" = deny ] && [ "$invert" = 1 ]; }; then
          set[$name]=1
        else
          unset "set[$name]"
        fi
      done
    done
  done < <(unit_values SystemCallFilter)
  [ "$mode" = allow ] || fail "SystemCallFilter= of $unit is not an allow list: this test only reproduces allow lists"
  printf '%s\n' "${!set[@]}" | sort
}

# --- Sandbox ingredients ------------------------------------------------------------------------------
prepare_sandbox_files() {
  mkdir -p "$T/bin" "$T/etc/rules" "$T/state" "$T/.newtmp" "$T/.dev" "$T/.run" "$T/filters"
  install -d -m 000 "$T/.inaccessible"
  install -m 000 /dev/null "$T/.inaccessible-file"
  local helper=$repo/tests/system
  cc -O2 -Wall -o "$T/bin/seccomp_exec" "$helper/seccomp_exec.c" "$helper/seccomp_filters.c" "$helper/seccomp_probe.c" \
    -lseccomp -lpthread || fail "cannot compile $helper/seccomp_exec.c (with seccomp_filters.c, seccomp_probe.c)"
  install -m 0755 "$binary" "$T/bin/plantd"   # as /usr/bin/plantd: root's, not writable by the service
}

# The seccomp filters and limits the unit asks for.
deny() { local file=$T/filters/$1; shift; for g in "$@"; do expand_syscalls "$g"; done > "$file"; filters+=(--deny "$file"); }
resolve_unit_settings() {
  local families error_name error_number hard_nofile
  resolve_syscall_filter > "$T/filters/allow"
  error_name=$(unit_value SystemCallErrorNumber); error_name=${error_name:-EPERM}
  error_number=$(python3 -c 'import errno, sys; print(getattr(errno, sys.argv[1]))' "$error_name") ||
    fail "unknown SystemCallErrorNumber=$error_name"
  filters=()
  families=$(unit_value RestrictAddressFamilies)
  if [ -n "$families" ]; then
    [[ $families != "~"* ]] || fail "RestrictAddressFamilies= is a deny list: not reproduced"
    filters+=(--address-families "${families// /,}")
  fi
  unit_yes MemoryDenyWriteExecute && filters+=(--mdwe)
  unit_yes RestrictRealtime && filters+=(--restrict-realtime)
  unit_yes RestrictSUIDSGID && filters+=(--restrict-suid-sgid)
  unit_yes RestrictNamespaces && filters+=(--restrict-namespaces)
  unit_yes ProtectKernelTunables && deny sysctl _sysctl
  unit_yes ProtectKernelModules && deny module @module
  unit_yes ProtectKernelLogs && deny syslog syslog
  unit_yes ProtectClock && deny clock @clock
  unit_yes PrivateDevices && deny raw-io @raw-io
  unit_yes ProtectHostname && deny hostname sethostname setdomainname
  [ "$(unit_value SystemCallArchitectures)" = native ] && filters+=(--native)
  unit_yes LockPersonality && filters+=(--lock-personality)
  filters+=(--allow "$T/filters/allow" --errno "$error_number")
  say "system call allow list from $(basename "$unit"): $(wc -l < "$T/filters/allow") calls, others fail with $error_name"

  umask_value=$(unit_value UMask); umask_value=${umask_value:-0022}
  nofile=$(unit_value LimitNOFILE); nofile=${nofile:-1024}
  hard_nofile=$(ulimit -Hn)
  if [ "$hard_nofile" != unlimited ] && [ "$nofile" -gt "$hard_nofile" ]; then
    say "LimitNOFILE=$nofile is above this machine's hard limit $hard_nofile (no CAP_SYS_RESOURCE here): using $hard_nofile"
    nofile=$hard_nofile
  fi
  watchdog_usec=$(( $(seconds_of "$(unit_value WatchdogSec)") * 1000000 ))
  state_mode=$(unit_value StateDirectoryMode); state_mode=${state_mode:-0755}
  runtime_mode=$(unit_value RuntimeDirectoryMode); runtime_mode=${runtime_mode:-0755}
  if unit_yes PrivateUsers; then private_users=1; else private_users=0; fi
}

create_service_user() {
  # The service user, as the package's sysusers.d file would make it.
  if ! id -u "$test_user" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$test_user"
    say "created the system user $test_user"
  fi
  svc_uid=$(id -u "$test_user"); svc_gid=$(id -g "$test_user")
  chown "$test_user:$test_user" "$T/state"; chmod "$state_mode" "$T/state"
}

# The namespace side, run as root by unshare in new mount, UTS, IPC and PID namespaces (it is PID 1
# there), then the exec chain: [env -i] -> seccomp_exec --private-users -> setpriv -> seccomp_exec
# (filters) -> the command: tests/system/sandbox-setup, copied into the test directory (root's,
# mode 0755), and the environment it reads.
install_sandbox_setup() {
  install -m 0755 "$repo/tests/system/sandbox-setup" "$T/bin/sandbox-setup"
  export SANDBOX_DIR=$T SVC_UID=$svc_uid SVC_GID=$svc_gid SVC_USER=$test_user PRIVATE_USERS=$private_users
  export RUNTIME_MODE=$runtime_mode SANDBOX_UMASK=$umask_value SANDBOX_NOFILE=$nofile
  INVOCATION_ID=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  export SECCOMP_FILTERS="${filters[*]}" INVOCATION_ID
  export NOTIFY_SOCKET="" WATCHDOG_USEC=""
}
sandbox() { unshare --mount --uts --ipc --pid --fork --kill-child --propagation private "$T/bin/sandbox-setup" "$@"; }
