# Shared by the bench scripts (sourced, not run).

# The cargo profile the benchmarks build and run (Cargo.toml: `production`, the build to deploy,
# for portcullis and the minimal proxy alike); PROFILE=release measures the quicker build.
PROFILE=${PROFILE:-production}
BIN=target/$PROFILE

# Builds the given cargo targets (e.g. `--bin portcullis`) under $PROFILE.
build_bins() {
  cargo build --profile "$PROFILE" --quiet "$@"
}

# Stops the processes in the `pids` array. SIGINT is pingora's fast shutdown (SIGTERM waits out a
# grace period, and a proxy left listening would share its SO_REUSEPORT port with the next run's).
stop_pids() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}

# Exits when one of the given ports is already listened on: a proxy left there would share it
# (SO_REUSEPORT) with this run's and skew its numbers.
require_free_ports() {
  for port in "$@"; do
    if ss -Hltn "sport = :$port" | grep -q .; then
      echo "port $port is in use: stop what listens there first" >&2
      exit 1
    fi
  done
}

# CPU time (utime + stime, in clock ticks) the given pids have used so far; a pid that is gone
# counts nothing.
cpu_ticks() {
  local t=0; for p in "$@"; do
    if [ -r "/proc/$p/stat" ]; then set -- $(sed 's/.*) //' "/proc/$p/stat"); t=$((t + ${12} + ${13})); fi
  done; echo $t; }

# Waits (at most 60 s) until the machine is nearly idle: less than a tenth of one core busy over
# half a second. A proxy still draining a backlog when its cell ends (nginx + ModSecurity answers a
# 64 KiB form POST in over a second, so it holds work queued seconds after wrk stops) would
# otherwise run on during the next cell and skew its figures.
wait_for_idle() {
  local busy_limit=$(( $(getconf CLK_TCK) / 20 )) # clock ticks: a tenth of one core over 0.5 s
  for _ in $(seq 120); do
    local a b
    a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat)
    sleep 0.5
    b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat)
    [ $((b - a)) -le "$busy_limit" ] && return 0
  done
  echo "the machine did not become idle within 60 s; going on" >&2
}

# Starts the peer nginx: origin (18081), nginx + ModSecurity + CRS (18080), plain nginx (18082).
# The peer's nginx.conf keeps its pid, logs and temp files under /tmp/peer-nginx; its own files go
# to $1/peer. Reads PEER (the reference setup, ../shared/peer).
start_peer() {
  mkdir -p "$1/peer" /tmp/peer-nginx
  for f in "$PEER"/*.conf; do sed "s#PEER_DIR#$1/peer#g" "$f" > "$1/peer/$(basename "$f")"; done
  nginx -p /tmp/peer-nginx -c "$1/peer/nginx.conf"
}

# The edge configuration every benchmark cell uses: plain HTTP on 127.0.0.1:$1, the WAF in mode $2,
# logs off, one site proxying to the origin. Reads PROXY_THREADS.
edge_config() {
  cat <<TOML
[server]
threads = $PROXY_THREADS
[logging]
access_log = "off"
waf_log = "off"
[waf.policy]
mode = "$2"
[[listeners]]
name = "bench"
bind = "127.0.0.1:$1"
protocol = "http"
TOML
  bench_site_toml 18081
}

# The whole edge as the performance issue counts it (rules, geo, rewrites and logging included):
# the WAF in prevention, JSON access and WAF logs written to files under $2, a country database
# (geoip/test-countries.csv, built into $2) with a deny list and a country header, and a request and
# a response rewrite. None of it refuses the benchmark's benign requests. Reads PROXY_THREADS.
full_edge_config() {
  "$BIN/portcullis" geoip build geoip/test-countries.csv -o "$2/countries.mmdb" >/dev/null
  cat <<TOML
[server]
threads = $PROXY_THREADS
[logging]
access_log = "$2/access.log"
waf_log = "$2/waf.log"
[waf.policy]
mode = "prevention"
[geoip]
database = "$2/countries.mmdb"
[[listeners]]
name = "bench"
bind = "127.0.0.1:$1"
protocol = "http"
TOML
  bench_site_toml 18081 '
geo = { deny = ["KP"] }
country_header = "X-Client-Country"
[[sites.rewrites]]
name = "api-version"
conditions = [{ variable = "uri_path", pattern = '"'"'^/api/(v[0-9]+)/'"'"' }]
actions = [
  { set_request_header = "X-Api-Version", value = "{cond.1.1}" },
  { set_response_header = "X-Frame-Options", value = "DENY" },
]'
}

# The one site of every benchmark edge: all hosts to the pool "origin" at 127.0.0.1:$1, with the
# site keys in $2 (optional).
bench_site_toml() {
  cat <<TOML
[[sites]]
name = "bench"
hosts = ["*"]
routes = [{ pool = "origin" }]
${2:-}
[[pools]]
name = "origin"
backends = [{ address = "127.0.0.1:$1" }]
TOML
}

# EXIT trap of the scripts that use start_peer: stops the proxies and the peer, removes $W.
stop_peer_run() {
  stop_pids
  nginx -p /tmp/peer-nginx -c "$W/peer/nginx.conf" -s quit 2>/dev/null || true
  rm -rf "$W"
}
