#!/usr/bin/env bash
# Thread scaling: portcullis (WAF on, default rules, PL1, prevention, logs off) and the minimal
# pingora proxy (mimalloc build) with 1, 2, 4 and 8 worker threads, each proxy pinned to as many
# cores as it has threads, while wrk and the origin (an nginx that answers "ok") run on the cores
# above. The performance issue's target: portcullis's requests/s grow at least 6x from 1 to 8
# threads, on a machine with 16 or more cores (8 for the proxy, 8 for the load).
#
# Usage: bench/scaling.sh [DURATION_SECONDS] ; env THREADS (default "1 2 4 8"), MIX (a bench/*.lua,
# default benign), ROUNDS (default 3: interleaved, the table shows medians), CONNS_PER_THREAD
# (default 32: wrk keeps that many connections per proxy thread).
#
# With fewer than twice as many cores as the largest thread count, nothing is pinned and the
# figures only show how the proxy shares a machine with its own load (the script says so).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
DURATION=${1:-10}
THREADS=${THREADS:-1 2 4 8}
MIX=${MIX:-benign}
ROUNDS=${ROUNDS:-3}
CONNS_PER_THREAD=${CONNS_PER_THREAD:-32}

need=()
for b in nginx wrk taskset; do command -v $b >/dev/null || need+=($b); done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing nginx wrk util-linux" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk util-linux >/dev/null
fi
bash scripts/prereqs.sh
build_bins --bin portcullis --example minimal_proxy_mimalloc
require_free_ports 18081 19001 19004

cores=$(nproc)
max_threads=$(printf '%s\n' $THREADS | sort -n | tail -1)
if [ "$cores" -ge $((2 * max_threads)) ]; then
  pinned=1
  load_cpus="$max_threads-$((cores - 1))"
  load_cores=$((cores - max_threads))
else
  pinned=0
  load_cpus="0-$((cores - 1))"
  load_cores=$cores
  echo "only $cores cores for up to $max_threads proxy threads plus the load: nothing is pinned," \
    "and the figures are bound by the shared cores (the target needs 16 or more)" >&2
fi
# Half of the load cores for wrk, half for the origin's workers.
wrk_threads=$(((load_cores + 1) / 2))
origin_workers=$(((load_cores + 1) / 2))

W=$(mktemp -d /tmp/portcullis-scaling.XXXX)
pids=()
stop_origin() {
  stop_pids
  [ -f "$W/origin.pid" ] && kill -QUIT "$(cat "$W/origin.pid")" 2>/dev/null || true
  rm -rf "$W"
}
trap stop_origin EXIT

cat > "$W/origin.conf" <<CONF
worker_processes $origin_workers;
pid $W/origin.pid;
error_log $W/origin-error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:18081 reuseport backlog=4096; location / { return 200 "ok\n"; } }
}
CONF
taskset -c "$load_cpus" nginx -p "$W" -c "$W/origin.conf"

proxy_cpus() { # thread count
  if [ "$pinned" = 1 ]; then echo "0-$(($1 - 1))"; else echo "0-$((cores - 1))"; fi
}

results="$W/results.tsv"
: > "$results"
measure() { # proxy name, thread count, port, pid
  local name=$1 threads=$2 port=$3 pid=$4 before after out
  local conns=$((CONNS_PER_THREAD * threads))
  [ "$conns" -lt "$wrk_threads" ] && conns=$wrk_threads
  taskset -c "$load_cpus" wrk -t"$wrk_threads" -c"$conns" -d2s -s "bench/$MIX.lua" "http://127.0.0.1:$port/" >/dev/null
  before=$(cpu_ticks "$pid")
  out=$(taskset -c "$load_cpus" wrk -t"$wrk_threads" -c"$conns" -d"${DURATION}s" -s "bench/$MIX.lua" "http://127.0.0.1:$port/" 2>&1)
  after=$(cpu_ticks "$pid")
  python3 - "$name" "$threads" "$before" "$after" "$(getconf CLK_TCK)" >> "$results" <<PY
import re, sys
name, threads, before, after, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
out = """$out"""
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
total = int(re.search(r"(\d+) requests in", out).group(1))
non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
print(f"{name}\t{threads}\t{rps:.0f}\t{(after - before) / hz * 1e6 / max(total, 1):.1f}\t{non2xx}")
PY
}

# Starts one proxy with the given thread count on its cores, measures it, stops it.
cell() { # proxy, thread count
  local proxy=$1 threads=$2 cpus
  cpus=$(proxy_cpus "$threads")
  wait_for_idle
  if [ "$proxy" = portcullis ]; then
    PROXY_THREADS=$threads edge_config 19001 prevention > "$W/edge.toml"
    taskset -c "$cpus" "$BIN/portcullis" run -c "$W/edge.toml" >/dev/null 2>&1 &
    pids=($!)
    sleep 2
    measure "portcullis WAF on" "$threads" 19001 "${pids[0]}"
  else
    taskset -c "$cpus" "$BIN/examples/minimal_proxy_mimalloc" 127.0.0.1:19004 127.0.0.1:18081 "$threads" >/dev/null 2>&1 &
    pids=($!)
    sleep 1
    measure "minimal pingora+mimalloc" "$threads" 19004 "${pids[0]}"
  fi
  stop_pids
  pids=()
}

for round in $(seq "$ROUNDS"); do
  for threads in $THREADS; do
    for proxy in portcullis minimal; do
      cell "$proxy" "$threads"
    done
  done
done

echo "cores: $cores; pinned: $([ "$pinned" = 1 ] && echo "proxy on cores 0..threads-1, wrk ($wrk_threads threads) and origin ($origin_workers workers) on $load_cpus" || echo no); mix: $MIX; ${DURATION}s x $ROUNDS rounds"
python3 - "$results" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
cells = {}
for name, threads, rps, cpu, bad in rows:
    cells.setdefault((name, int(threads)), []).append((float(rps), float(cpu), int(bad)))
names = ["portcullis WAF on", "minimal pingora+mimalloc"]
threads = sorted({t for _, t in cells})
print("| threads | " + " | ".join(f"{n} req/s | x 1 thread | CPU us/req" for n in names) + " | non-2xx |")
print("|---:|" + "---:|---:|---:|" * len(names) + "---:|")
med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v), sum(r[2] for r in v)) for k, v in cells.items()}
for t in threads:
    parts, bad = [], 0
    for n in names:
        rps, cpu, b = med.get((n, t), (float("nan"), float("nan"), 0))
        base = med.get((n, threads[0]), (float("nan"),))[0]
        parts.append(f"{rps:.0f} | {rps / base:.2f}x | {cpu:.1f}")
        bad += b
    print(f"| {t} | " + " | ".join(parts) + f" | {bad} |")
lo, hi = threads[0], threads[-1]
for n in names:
    if (n, lo) in med and (n, hi) in med:
        print(f"- {n}: {hi} threads give {med[(n, hi)][0] / med[(n, lo)][0]:.2f}x the requests/s of {lo}")
PY
