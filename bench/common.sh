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

# The ports above are fixed, so a program on the host that holds one would fail the run, and two
# runs at once would measure each other. isolate_network re-executes the calling script (with the
# arguments given) in a network namespace of its own, where loopback is the only interface and
# every port is free: as root with `unshare --net`; otherwise in a user namespace
# (`unshare --net --map-root-user`, then mapped back to the caller's own user where unshare can,
# so proxies that drop privileges when root behave as on the host); otherwise through
# passwordless sudo, dropping back to the caller's user. Call it after whatever needs the host's
# network (apt-get, cargo) and before starting anything. Where no namespace can be made the run
# continues on the host's loopback with a warning, except in CI (CI=true), where that fails.
# Sets BENCH_NETWORK to what the run uses.
isolate_network() {
  local script="$PWD/bench/${0##*/}" uid gid host_ns
  if [ -n "${SNIWAY_BENCH_NETNS:-}" ]; then
    # The re-executed script, inside the namespace.
    if [ "$(readlink /proc/self/ns/net)" = "$SNIWAY_BENCH_NETNS" ]; then
      echo "error: the benchmark was to run in its own network namespace but is in the host's" >&2
      exit 1
    fi
    if ! ip -o link show lo | grep -q ',UP'; then
      echo "error: loopback is down in the benchmark's network namespace" >&2
      exit 1
    fi
    BENCH_NETWORK="a network namespace of its own (loopback only)"
    return 0
  fi
  uid=$(id -u)
  gid=$(id -g)
  host_ns=$(readlink /proc/self/ns/net)
  # Brings loopback up in the new namespace, then runs the rest of the command line.
  local up='ip link set lo up && exec "$@"'
  local -a via
  local tried
  if [ "$uid" -eq 0 ]; then
    via=(unshare --net -- bash -c "$up" lo-up)
    tried="unshare --net"
  else
    via=(unshare --net --map-root-user -- bash -c "$up" lo-up)
    if unshare --help 2>/dev/null | grep -q -- --map-user; then
      via+=(unshare --user --map-user="$uid" --map-group="$gid" --)
    fi
    tried="unshare --net --map-root-user"
    if ! "${via[@]}" true 2>/dev/null; then
      via=(sudo -n --preserve-env unshare --net -- bash -c "$up" lo-up
        setpriv --reuid="$uid" --regid="$gid" --init-groups --)
      tried="$tried; sudo -n unshare --net"
    fi
  fi
  if "${via[@]}" true 2>/dev/null; then
    exec "${via[@]}" env PATH="$PATH" HOME="$HOME" SNIWAY_BENCH_NETNS="$host_ns" \
      bash "$script" "$@"
  fi
  if [ "${CI:-}" = true ]; then
    echo "error: cannot create a network namespace for the benchmark (tried: $tried)." >&2
    echo "  Without one its fixed ports (bench/common.sh) are shared with the host. Allow" >&2
    echo "  unprivileged user namespaces or passwordless sudo (in a container: CAP_SYS_ADMIN)." >&2
    exit 1
  fi
  echo "warning: cannot create a network namespace (tried: $tried); running on the host's" >&2
  echo "  loopback, where ports 18441-18454 and $BACKEND-$((BACKEND + 3)) must be free" >&2
  BENCH_NETWORK="the host's loopback"
}
