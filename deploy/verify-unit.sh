#!/usr/bin/env bash
# Checks a systemd unit with `systemd-analyze verify` (default: deploy/portcullis.service).
#
#   bash deploy/verify-unit.sh [UNIT]
#
# verify reports an unknown directive, a misspelt section or a bad value as a warning and still
# exits 0, so any line it prints fails this check. The binary the unit runs is not installed where
# this runs: the unit is verified as a copy whose /usr/local/bin/portcullis is an empty executable
# in a temporary directory, everything else unchanged (verify does not look users up).
set -euo pipefail
cd "$(dirname "$0")/.."
unit="${1:-deploy/portcullis.service}"

command -v systemd-analyze >/dev/null 2>&1 || {
  echo "systemd-analyze not found: install systemd (scripts/prereqs.sh --ci does)" >&2
  exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#!/bin/sh\nexit 0\n' >"$tmp/portcullis"
chmod +x "$tmp/portcullis"
# Same file name: verify takes the unit's name (and type) from it.
sed "s#/usr/local/bin/portcullis#$tmp/portcullis#g" "$unit" >"$tmp/$(basename "$unit")"

# --man=no: Documentation= holds no man page to look up.
if ! out=$(systemd-analyze verify --man=no "$tmp/$(basename "$unit")" 2>&1) || [ -n "$out" ]; then
  echo "$unit: systemd-analyze verify:" >&2
  # Name the real file, not the temporary copy.
  echo "${out//$tmp\//$(dirname "$unit")/}" >&2
  exit 1
fi
echo "$unit: ok"
