#!/usr/bin/env bash
# TLS, HTTP/2 and memory, one run on this machine (see BENCHMARKS.md):
#   1. new TLS 1.3 handshakes (ECDHE, P-256 certificate) and resumed handshakes per second,
#      portcullis (rustls) vs nginx (OpenSSL), both TLS-terminating proxies with 2 workers in front
#      of the same origin, client `openssl s_time`;
#   2. HTTP/2 over TLS requests per second through both (h2load);
#   3. portcullis RSS at idle with the default rule sets (as started, and again after the runs above),
#      and with 10,000 idle keep-alive connections.
# Usage: bench/tls_mem.sh [SECONDS_PER_CELL]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
SECS=${1:-10}
ulimit -n "$(ulimit -Hn)"   # before the edge starts: it holds 10,000 connections below (needs ~10,100)
command -v nginx >/dev/null && command -v h2load >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx nghttp2-client >/dev/null; }
bash scripts/prereqs.sh
build_bins --bin portcullis

W=$(mktemp -d /tmp/portcullis-tlsbench.XXXX)
pids=()
cleanup() {
  stop_pids
  nginx -p "$W/nginx" -c "$W/nginx.conf" -s quit 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

# One ECDSA P-256 certificate for both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench.test" \
  -addext "subjectAltName=DNS:bench.test" -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null

mkdir -p "$W/nginx"
cat > "$W/nginx.conf" <<CONF
worker_processes 2;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $W/nginx/body;
  proxy_temp_path $W/nginx/proxy;
  fastcgi_temp_path $W/nginx/fcgi;
  uwsgi_temp_path $W/nginx/uwsgi;
  scgi_temp_path $W/nginx/scgi;
  ssl_session_cache shared:tls:10m;
  keepalive_requests 1000000;   # the default (1000) closes each h2load connection after 1000 requests
  server {
    listen 127.0.0.1:19443 ssl http2;
    ssl_certificate $W/cert.pem;
    ssl_certificate_key $W/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://origin; }
  }
  upstream origin { server 127.0.0.1:19446; keepalive 512; }  # no connection churn at 320 streams
  server { listen 127.0.0.1:19446; location / { return 200 "ok\n"; } }
}
CONF
nginx -p "$W/nginx" -c "$W/nginx.conf"

cat > "$W/edge.toml" <<TOML
[server]
threads = 2
[logging]
access_log = "off"
waf_log = "off"
[limits]
max_connections_per_client = 0   # every benchmark connection comes from 127.0.0.1
[[listeners]]
name = "tls"
bind = "127.0.0.1:19444"
protocol = "https"
http2 = true
[[listeners.certificates]]
cert = "$W/cert.pem"
key = "$W/key.pem"
default = true
[[listeners]]
name = "plain"
bind = "127.0.0.1:19445"
protocol = "http"
TOML
bench_site_toml 19446 >> "$W/edge.toml"
"$BIN"/portcullis run -c "$W/edge.toml" >/dev/null 2>&1 & pids+=($!); EDGE=$!
sleep 2
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# Idle as started, before any traffic: what the rule sets and listeners hold.
IDLE_RSS_MIB=$(( $(rss_kib $EDGE) / 1024 ))

# openssl s_time: -new = a full handshake per connection, -reuse = session resumption. Two clients
# at once; handshakes per wall-clock second, summed ("N connections in T real seconds").
stime() { # port, mode
  local out1 out2
  out1=$(mktemp); out2=$(mktemp)
  openssl s_time -connect "127.0.0.1:$1" -$2 -time "$SECS" >"$out1" 2>/dev/null &
  openssl s_time -connect "127.0.0.1:$1" -$2 -time "$SECS" >"$out2" 2>/dev/null
  wait
  cat "$out1" "$out2" | awk '/connections in [0-9]+ real seconds/ { n += $1; t = $4 } END { if (t > 0) printf "%.0f", n / t }'
  rm -f "$out1" "$out2"
}
echo "| server | TLS 1.3 full handshakes/s | resumed handshakes/s |"
echo "|---|---:|---:|"
for s in "nginx/OpenSSL 19443" "portcullis/rustls 19444"; do
  set -- $s
  echo "| $1 | $(stime "$2" new) | $(stime "$2" reuse) |"
done

echo
echo "| server | HTTP/2 over TLS req/s (h2load, 32 connections x 10 streams, ${SECS}s) | 2xx responses | failed |"
echo "|---|---:|---:|---:|"
for s in "nginx/OpenSSL 19443" "portcullis/rustls 19444"; do
  set -- $s
  # :authority, not Host: an HTTP/2 request whose Host differs from :authority is refused (400).
  out=$(h2load -D "$SECS" -c 32 -m 10 -t 1 -H ":authority: bench.test" "https://127.0.0.1:$2/" 2>/dev/null)
  rps=$(echo "$out" | awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($i == "req/s,") print $(i-1) }')
  ok=$(echo "$out" | awk '/^status codes:/ { print $3 }')
  failed=$(echo "$out" | awk '/^requests:/ { for (i = 1; i <= NF; i++) if ($i == "failed,") print $(i-1) }')
  echo "| $1 | $rps | $ok | $failed |"
done

echo
echo "portcullis RSS at idle (default rule sets, one TLS and one plain listener), as started: $IDLE_RSS_MIB MiB"
# After the runs above the allocator keeps freed pages and every worker has its regex caches.
echo "portcullis RSS idle again after the handshake and HTTP/2 runs: $(( $(rss_kib $EDGE) / 1024 )) MiB"

# 10,000 idle keep-alive connections on the plain listener, each after one proxied request.
python3 - "$EDGE" <<'PY'
import asyncio, sys
pid = int(sys.argv[1])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1]) // 1024
async def one(held):
    r, w = await asyncio.open_connection("127.0.0.1", 19445)
    w.write(b"GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n")
    await w.drain()
    await r.readuntil(b"\r\n\r\n")
    held.append((r, w))
async def main():
    held = []
    for i in range(0, 10000, 500):
        await asyncio.gather(*(one(held) for _ in range(500)))
    await asyncio.sleep(2)
    print(f"portcullis RSS with {len(held)} idle keep-alive connections: {rss()} MiB")
    for _, w in held:
        w.close()
asyncio.run(main())
PY
