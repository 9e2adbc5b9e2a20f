# Shared by bench/compare.sh and bench/ab.sh (sourced, not run).

# Waits up to 5 s for something to listen on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2
  return 1
}

# The backends' first port (echo; sink and source follow) and sniway's passthrough port
# (bench/manifests/).
BACKEND=19001
SNIWAY_PORT=18444

# Counts and durations of the full runs; bench/compare.sh --smoke sets smaller ones.
RATE_N=20000; LAT_N=2000; SECS=4; BULK_S=2; PP_N=20000; IDLE_N=9900; TLS_N=10000

# The sniway-loadgen arguments of a scenario (the target's are added by the caller). The TLS
# scenario needs $CONF (its certificate).
scenario_args() {
  case "$1" in
    rate-classic) echo "rate --connections $RATE_N --seconds $SECS --sni echo.bench.test,c.wild.bench.test" ;;
    rate-pq) echo "rate --connections $RATE_N --seconds $SECS --hello post-quantum --sni echo.bench.test,c.wild.bench.test" ;;
    latency-classic) echo "latency --connections $LAT_N --seconds $SECS" ;;
    latency-pq) echo "latency --connections $LAT_N --seconds $SECS --hello post-quantum" ;;
    bulk-up-1) echo "bulk --streams 1 --direction up --seconds $BULK_S" ;;
    bulk-up-8) echo "bulk --streams 8 --direction up --seconds $BULK_S" ;;
    bulk-down-1) echo "bulk --streams 1 --direction down --seconds $BULK_S" ;;
    bulk-down-8) echo "bulk --streams 8 --direction down --seconds $BULK_S" ;;
    pingpong) echo "pingpong --round-trips $PP_N --seconds $SECS" ;;
    idle) echo "idle --connections $IDLE_N --seconds 30" ;;
    tls-handshake) echo "handshakes --connections $TLS_N --seconds $SECS --concurrency 8 --sni tls.bench.test --ca $CONF/tls.crt" ;;
    *) echo "unknown scenario: $1" >&2; return 2 ;;
  esac
}
