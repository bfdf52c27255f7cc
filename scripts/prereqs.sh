#!/usr/bin/env bash
# Installs what building and testing Portcullis needs beyond the Rust toolchain:
# cmake (pingora's zlib-ng build); with --tests, redis-server and python3 (tests/packaging.rs
# runs deploy/lint-dockerfile.py); with --ci, also systemd-analyze (deploy/verify-unit.sh).
# Uses the system package manager when it can; otherwise prints the command and stops.
set -euo pipefail

mode="${1:-}"
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
if [ "$mode" = "--tests" ] || [ "$mode" = "--ci" ]; then
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
fi
# systemd-analyze comes with systemd itself; CI only verifies units with it, nothing runs them.
if [ "$mode" = "--ci" ] && [ "$(uname -s)" = Linux ]; then
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
fi
[ ${#need[@]} -eq 0 ] && exit 0

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; else
    echo "Missing: ${need[*]}. Install them as root, e.g.: apt-get install -y ${need[*]}" >&2; exit 1
  fi
fi
echo "Installing build prerequisites: ${need[*]}" >&2
if command -v apt-get >/dev/null 2>&1; then
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
elif command -v dnf >/dev/null 2>&1; then
  pkgs=("${need[@]/redis-server/redis}")
  $sudo_cmd dnf install -y "${pkgs[@]}"
elif command -v brew >/dev/null 2>&1; then
  pkgs=("${need[@]/redis-server/redis}")
  brew install "${pkgs[@]}"
else
  echo "Missing: ${need[*]}. Install them with your package manager, then run this again." >&2
  exit 1
fi
