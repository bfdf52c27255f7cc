#!/bin/sh
# The file-system sandbox of a systemd unit, for tests/packaging.rs (which runs this as root under
# `unshare --mount --propagation private`, so nothing here touches the machine's own mounts):
#
#   sandbox.sh [--protect-system=strict] [--protect-home] [--read-write=PATH]... -- COMMAND [ARG]...
#
#   --protect-system=strict  every mount read-only but the API file systems (/proc, /sys, /dev)
#                            and the --read-write paths, as ProtectSystem=strict does
#   --protect-home           /home, /root and /run/user empty and inaccessible (ProtectHome=true)
#   --read-write=PATH        stays writable (ReadWritePaths=, LogsDirectory=, RuntimeDirectory=);
#                            it must exist, as systemd refuses to start the unit otherwise
#
# then execs COMMAND (the rest of the unit's execution environment: prlimit, setpriv).
set -eu

strict=no home=no rw=""
while [ $# -gt 0 ]; do
  case "$1" in
    --protect-system=strict) strict=yes ;;
    --protect-home) home=yes ;;
    --read-write=*) rw="$rw ${1#--read-write=}" ;;
    --) shift; break ;;
    *) echo "sandbox.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ $# -gt 0 ] || { echo "sandbox.sh: no command" >&2; exit 2; }

# Each writable path becomes a mount of its own, so that remounting its parent read-only below
# leaves it alone.
for p in $rw; do
  [ -d "$p" ] || { echo "sandbox.sh: read-write path $p does not exist" >&2; exit 1; }
  mount --bind "$p" "$p"
done

if [ "$home" = yes ]; then
  for p in /home /root /run/user; do
    if [ -d "$p" ]; then mount -t tmpfs -o ro,mode=000 tmpfs "$p"; fi
  done
fi

writable() {
  for p in $rw; do
    case "$1" in "$p" | "$p"/*) return 0 ;; esac
  done
  return 1
}

if [ "$strict" = yes ]; then
  # Field 5 of mountinfo is the mount point (octal escapes for blanks), field 6 its options.
  # Remounting with those options, rw swapped for ro, keeps nosuid, nodev and the like.
  while read -r _ _ _ _ point options _; do
    point=$(printf '%b' "$point")
    case "$point" in /proc | /proc/* | /sys | /sys/* | /dev | /dev/*) continue ;; esac
    if writable "$point"; then continue; fi
    options=$(printf '%s' "$options" | sed 's/^rw,/ro,/; s/,rw,/,ro,/; s/,rw$/,ro/; s/^rw$/ro/')
    mount -o "remount,bind,$options" "$point"
  done </proc/self/mountinfo
fi

exec "$@"
