# Shared by the bench scripts (sourced, not run).

# Stops the processes in the `pids` array. SIGINT is pingora's fast shutdown (SIGTERM waits out a
# grace period, and a proxy left listening would share its SO_REUSEPORT port with the next run's).
stop_pids() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
