#!/usr/bin/env bash
# Instructions per request of each whole proxy process (callgrind, one worker thread): the steady
# companion of run.sh, whose requests/s move by ±15% on a shared 2-core machine. Each proxy runs
# under valgrind, gets a warm-up, then its counters are zeroed, a wrk load of DURATION seconds runs,
# and the counters are dumped: instructions executed in the process / requests answered.
# Kernel time (syscalls, scheduling) is not counted; it is about the same for every proxy.
# Usage: bench/instructions.sh [DURATION_SECONDS] ; env MIX (default benign: a bench/*.lua file).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
DURATION=${1:-10}
MIX=${MIX:-benign}
PEER=${PEER:-../shared/peer}
PROXY_THREADS=1

command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
for b in nginx wrk; do command -v $b >/dev/null || { echo "needs $b (bench/run.sh installs it)" >&2; exit 1; }; done
bash scripts/prereqs.sh
build_bins --bin portcullis --example minimal_proxy --example minimal_proxy_mimalloc
require_free_ports 18080 18081 18082 19011 19012 19013 19014 19015

W=$(mktemp -d /tmp/portcullis-instr.XXXX)
pids=()
trap stop_peer_run EXIT
start_peer "$W"
edge_config 19011 prevention > "$W/waf-on.toml"
edge_config 19012 off > "$W/waf-off.toml"
full_edge_config 19015 "$W" > "$W/full-edge.toml"

# measure NAME PORT COMMAND...: prints "NAME<TAB>requests<TAB>instructions per request".
measure() {
  local name=$1 port=$2; shift 2
  local out="$W/cg.$port"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>&1 &
  local vp=$!; pids+=($vp)
  for _ in $(seq 120); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 1; done
  wrk -t1 -c4 -d3s -s "bench/$MIX.lua" "http://127.0.0.1:$port/" >/dev/null
  callgrind_control -z "$vp" >/dev/null 2>&1
  local n
  n=$(wrk -t1 -c4 -d"${DURATION}s" -s "bench/$MIX.lua" "http://127.0.0.1:$port/" | awk '/requests in/{print $1}')
  callgrind_control -d "$vp" >/dev/null 2>&1
  sleep 1
  kill -INT "$vp" 2>/dev/null || true
  wait "$vp" 2>/dev/null || true
  # The dump taken after the load is the first numbered part (".1").
  local total
  total=$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1; exit}')
  printf '%s\t%s\t%s\n' "$name" "$n" "$((total / n))"
}

{
  echo -e "proxy\trequests\tinstructions/request"
  measure "portcullis WAF on" 19011 "$BIN"/portcullis run -c "$W/waf-on.toml"
  measure "portcullis WAF off" 19012 "$BIN"/portcullis run -c "$W/waf-off.toml"
  measure "portcullis full edge" 19015 "$BIN"/portcullis run -c "$W/full-edge.toml"
  measure "minimal pingora" 19013 "$BIN"/examples/minimal_proxy 127.0.0.1:19013 127.0.0.1:18081 1
  measure "minimal pingora+mimalloc" 19014 "$BIN"/examples/minimal_proxy_mimalloc 127.0.0.1:19014 127.0.0.1:18081 1
} | column -t -s $'\t'
