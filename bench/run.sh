#!/usr/bin/env bash
# End-to-end benchmark, one run, same origin, same request mixes, load generator
# on the same machine (see BENCHMARKS.md):
#   portcullis (WAF on, default rules, PL1, prevention) | portcullis (WAF off)
#   | portcullis full edge (WAF on plus geo, rewrites and access/WAF logs to files)
#   | minimal pingora proxy (examples/minimal_proxy/) | the same with mimalloc (the
#   allocator portcullis uses, to show the allocator's share) | nginx | nginx + ModSecurity + CRS
# Usage: bench/run.sh [DURATION_SECONDS] ; env CONNS (default 32), PROXY_THREADS (default 2),
# ROUNDS (default 3: each cell runs ROUNDS times, interleaved, and the table shows medians),
# MIXES (default "benign benign_varied post_json post_form attack").
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
DURATION=${1:-10}
CONNS=${CONNS:-32}
PROXY_THREADS=${PROXY_THREADS:-2}
ROUNDS=${ROUNDS:-3}
MIXES=${MIXES:-benign benign_varied post_json post_form attack}
PEER=${PEER:-../shared/peer}

need=()
for b in nginx wrk; do command -v $b >/dev/null || need+=($b); done
[ -f /usr/lib/nginx/modules/ngx_http_modsecurity_module.so ] || need+=(libnginx-mod-http-modsecurity modsecurity-crs)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-http-modsecurity modsecurity-crs wrk >/dev/null
fi
bash scripts/prereqs.sh
build_bins --bin portcullis --example minimal_proxy --example minimal_proxy_mimalloc

require_free_ports 18080 18081 18082 19001 19002 19003 19004 19005

W=$(mktemp -d /tmp/portcullis-bench.XXXX)
pids=()
trap stop_peer_run EXIT

start_peer "$W"

edge_config 19001 prevention > "$W/waf-on.toml"
edge_config 19002 off > "$W/waf-off.toml"
full_edge_config 19005 "$W" > "$W/full-edge.toml"
"$BIN"/portcullis run -c "$W/waf-on.toml" >/dev/null 2>&1 & pids+=($!); WAF_ON=$!
"$BIN"/portcullis run -c "$W/waf-off.toml" >/dev/null 2>&1 & pids+=($!); WAF_OFF=$!
"$BIN"/portcullis run -c "$W/full-edge.toml" >/dev/null 2>&1 & pids+=($!); FULL_EDGE=$!
"$BIN"/examples/minimal_proxy 127.0.0.1:19003 127.0.0.1:18081 "$PROXY_THREADS" >/dev/null 2>&1 & pids+=($!); MINIMAL=$!
"$BIN"/examples/minimal_proxy_mimalloc 127.0.0.1:19004 127.0.0.1:18081 "$PROXY_THREADS" >/dev/null 2>&1 & pids+=($!); MINIMAL_MI=$!
sleep 2

nginx_pids() { pgrep -f "nginx: worker process" | tr '\n' ' '; }

results="$W/results.tsv"
: > "$results"
run() { # name, port, pids, lua
  local name=$1 port=$2 pidlist=$3 lua=$4
  local before after out
  wait_for_idle
  before=$(cpu_ticks $pidlist)
  out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "bench/$lua.lua" "http://127.0.0.1:$port/" 2>&1)
  after=$(cpu_ticks $pidlist)
  python3 - "$name" "$lua" "$before" "$after" "$(getconf CLK_TCK)" >> "$results" <<PY
import re, sys
name, mix, before, after, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
out = """$out"""
def lat(label):
    m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)" % label, out)
    if not m: return float("nan")
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
total = int(re.search(r"(\d+) requests in", out).group(1))
non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
cpu_us = (after - before) / hz * 1e6 / max(total, 1)
print(f"{name}\t{mix}\t{rps:.0f}\t{lat('50'):.3f}\t{lat('99'):.3f}\t{cpu_us:.1f}\t{non2xx}\t{total}")
PY
}

# ROUNDS passes over every cell, interleaved, so a slow moment of the shared box hits all
# proxies alike; the table keeps each cell's median. Each round starts one cell further down the
# list: on this kind of machine a cell's place in the round moves its figures (up to 20% in A/B
# runs), so no proxy should always run right after the same neighbour.
cell() { # index, mix
  case $1 in
    0) run "portcullis WAF on" 19001 "$WAF_ON" $2 ;;
    1) run "portcullis WAF off" 19002 "$WAF_OFF" $2 ;;
    2) run "portcullis full edge" 19005 "$FULL_EDGE" $2 ;;
    3) run "minimal pingora" 19003 "$MINIMAL" $2 ;;
    4) run "minimal pingora+mimalloc" 19004 "$MINIMAL_MI" $2 ;;
    5) run "nginx" 18082 "$(nginx_pids)" $2 ;;
    6) run "nginx+ModSecurity+CRS" 18080 "$(nginx_pids)" $2 ;;
  esac
}
n_cells=7
for round in $(seq "$ROUNDS"); do
  for mix in $MIXES; do
    for i in $(seq 0 $((n_cells - 1))); do
      cell $(((i + round - 1) % n_cells)) $mix
    done
  done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
cells = {}
for name, mix, rps, p50, p99, cpu, bad, total in rows:
    cells.setdefault((mix, name), []).append((float(rps), float(p50), float(p99), float(cpu), int(bad), int(total)))
print("| mix | proxy | req/s | p50 ms | p99 ms | CPU us/req | non-2xx | requests |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
by = {}
for (mix, name), runs in cells.items():
    med = [statistics.median(r[i] for r in runs) for i in range(4)]
    by[(mix, name)] = med[0]
    bad, total = sum(r[4] for r in runs), sum(r[5] for r in runs)
    print(f"| {mix} | {name} | {med[0]:.0f} | {med[1]:.3f} | {med[2]:.3f} | {med[3]:.1f} | {bad} | {total} |")
print()
for mix in ("benign", "benign_varied", "post_json", "post_form", "attack"):
    on = by.get((mix, "portcullis WAF on"))
    if not on: continue
    def ratio(other):
        v = by.get((mix, other)); return f"{on / v:.2f}x" if v else "n/a"
    print(f"- {mix}: WAF on vs minimal pingora {ratio('minimal pingora')} (vs the mimalloc build {ratio('minimal pingora+mimalloc')}), vs nginx {ratio('nginx')}, vs nginx+ModSecurity+CRS {ratio('nginx+ModSecurity+CRS')}, vs WAF off {ratio('portcullis WAF off')}")
    full = by.get((mix, "portcullis full edge"))
    if full and by.get((mix, "minimal pingora")):
        def full_ratio(other):
            v = by.get((mix, other)); return f"{full / v:.2f}x" if v else "n/a"
        print(f"  full edge (WAF, geo, rewrites, logs) vs minimal pingora {full_ratio('minimal pingora')}, vs nginx {full_ratio('nginx')}, vs nginx+ModSecurity+CRS {full_ratio('nginx+ModSecurity+CRS')}, vs WAF on {full / on:.2f}x")
PY
