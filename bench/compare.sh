#!/usr/bin/env bash
# L4 SNI-proxy benchmark: sniway against HAProxy, nginx (stream + ssl_preread) and sniproxy, with
# a direct (no proxy) reference, in one run, interleaved over several rounds.
#
#   bench/compare.sh                 # 5 rounds, every target, every scenario (about 10 minutes)
#   bench/compare.sh --rounds 3 --only sniway,haproxy,direct
#   bench/compare.sh --scenarios rate-classic,pingpong
#   bench/compare.sh --smoke         # tiny counts, sniway and direct, debug build: checks it runs
#
# Every proxy gets the same routes: echo.bench.test, sink.bench.test, source.bench.test (exact)
# and *.wild.bench.test (wildcard), logging off, one worker. Proxies run pinned to CPU 1
# (taskset), the load generator and the backends to CPU 0. The proxies' CPU time and memory come
# from /proc (sniway-loadgen --proxy-pid). Results: one JSON line per run in $OUT/results.jsonl,
# then a table of medians, spread (min-max) and ratios (bench/summarize.py).
#
# Peers are installed from Debian's packages when missing (apt-get; nothing else is fetched).
# Everything started here is stopped by PID on exit. Loopback only, in a network namespace of
# the run's own, so the fixed ports cannot clash with the host's (bench/common.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=bench/common.sh
source bench/common.sh
ARGS=("$@")

ROUNDS=5
ONLY="direct,haproxy,nginx,sniproxy,sniway"
SCENARIOS="rate-classic,rate-pq,latency-classic,latency-pq,bulk-up-1,bulk-up-8,bulk-down-1,bulk-down-8,pingpong,idle,tls-handshake"
SMOKE=0
WORKERS=1
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    -h|--help) sed -n 2,20p "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [ "$SMOKE" = 1 ]; then
  ROUNDS=1
  ONLY="direct,sniway"
fi

# Descriptors: the idle scenario holds ~9,900 relayed connections; a proxy needs two each.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

has() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
want() { case ",$SCENARIOS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# --- tools -------------------------------------------------------------------------------------
need=()
has haproxy && ! command -v haproxy >/dev/null 2>&1 && need+=(haproxy)
has nginx && ! [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] && need+=(nginx libnginx-mod-stream)
has sniproxy && ! command -v sniproxy >/dev/null 2>&1 && need+=(sniproxy)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
want tls-handshake && ! command -v openssl >/dev/null 2>&1 && need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ "$SMOKE" = 1 ]; then
  cargo build --quiet -p sniway -p sniway-loadgen
  BIN=$ROOT/target/debug
else
  cargo build --quiet --release -p sniway -p sniway-loadgen
  BIN=$ROOT/target/release
fi
LOADGEN=$BIN/sniway-loadgen

# From here on, in a network namespace of the run's own: the fixed ports are private to it
# (bench/common.sh). The packages and the build above needed the host's network.
isolate_network "${ARGS[@]}"

WORK=$(mktemp -d /tmp/sniway-bench.XXXXXX)
[ -n "$OUT" ] || OUT=$WORK
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$WORK/conf"
  if [ "$SMOKE" = 1 ] && [ "$OUT" = "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
  PIN_PROXY="taskset -c 1"
  PIN_LOAD="taskset -c 0"
else
  PIN_PROXY=""
  PIN_LOAD=""
fi

# --- ports and configurations --------------------------------------------------------------------
# BACKEND (echo; sink and source follow) and SNIWAY_PORT come from bench/common.sh.
declare -A PORT=([direct]=$BACKEND [haproxy]=18441 [nginx]=18442 [sniproxy]=18443 [sniway]=$SNIWAY_PORT)
# TLS terminated by the proxy, plaintext echo behind it (tls-handshake scenario).
declare -A TLS_PORT=([haproxy]=18451 [sniway]=18454)
PLAIN=$((BACKEND + 3))
CONF=$WORK/conf
mkdir -p "$CONF"

# One ECDSA P-256 certificate for tls.bench.test, served by every proxy that terminates TLS.
SNIWAY_FILES=(-f bench/manifests/)
HAPROXY_TLS=""
if want tls-handshake; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=tls.bench.test -addext subjectAltName=DNS:tls.bench.test \
    -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth \
    -keyout "$CONF/tls.key" -out "$CONF/tls.crt" 2>/dev/null
  cat "$CONF/tls.crt" "$CONF/tls.key" >"$CONF/haproxy.pem"
  cat >"$CONF/terminate.yaml" <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: bench-tls
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$CONF/tls.crt")
  tls.key: $(base64 -w0 "$CONF/tls.key")
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: bench-tls
spec:
  gatewayClassName: sniway
  addresses:
  - type: IPAddress
    value: 127.0.0.1
  listeners:
  - name: tls
    protocol: TLS
    port: ${TLS_PORT[sniway]}
    tls:
      mode: Terminate
      certificateRefs:
      - name: bench-tls
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata:
  name: tls
spec:
  parentRefs:
  - name: bench-tls
    sectionName: tls
  hostnames:
  - tls.bench.test
  rules:
  - backendRefs:
    - name: plain
      port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: plain
spec:
  ports:
  - name: plain
    port: 80
    targetPort: $PLAIN
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: plain-loopback
  labels:
    kubernetes.io/service-name: plain
addressType: IPv4
ports:
- name: plain
  port: $PLAIN
endpoints:
- addresses:
  - 127.0.0.1
EOF
  SNIWAY_FILES+=(-f "$CONF/terminate.yaml")
  HAPROXY_TLS="frontend tls-terminate
  bind 127.0.0.1:${TLS_PORT[haproxy]} ssl crt $CONF/haproxy.pem
  default_backend plain
backend plain
  server plain 127.0.0.1:$PLAIN"
fi

cat >"$CONF/haproxy.cfg" <<EOF
global
  nbthread 1
  # Two descriptors per connection plus splice pipes must fit the 20,000 descriptor limit.
  maxconn 9960
  maxpipes 20
defaults
  mode tcp
  maxconn 9960
  option splice-auto
  timeout connect 5s
  timeout client 120s
  timeout server 120s
frontend sni
  bind 127.0.0.1:${PORT[haproxy]}
  tcp-request inspect-delay 10s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend echo if { req.ssl_sni -i echo.bench.test }
  use_backend sink if { req.ssl_sni -i sink.bench.test }
  use_backend source if { req.ssl_sni -i source.bench.test }
  use_backend echo if { req.ssl_sni -m end .wild.bench.test }
backend echo
  server echo 127.0.0.1:$BACKEND
backend sink
  server sink 127.0.0.1:$((BACKEND + 1))
backend source
  server source 127.0.0.1:$((BACKEND + 2))
$HAPROXY_TLS
EOF

cat >"$CONF/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $CONF/nginx.pid;
error_log $CONF/nginx-error.log crit;
events { worker_connections 20000; }
stream {
  map \$ssl_preread_server_name \$backend {
    hostnames;
    echo.bench.test 127.0.0.1:$BACKEND;
    sink.bench.test 127.0.0.1:$((BACKEND + 1));
    source.bench.test 127.0.0.1:$((BACKEND + 2));
    *.wild.bench.test 127.0.0.1:$BACKEND;
  }
  server {
    listen 127.0.0.1:${PORT[nginx]};
    ssl_preread on;
    proxy_pass \$backend;
    access_log off;
  }
}
EOF

cat >"$CONF/sniproxy.conf" <<EOF
pidfile $CONF/sniproxy.pid
error_log {
  filename $CONF/sniproxy-error.log
  priority err
}
listener 127.0.0.1:${PORT[sniproxy]} {
  protocol tls
  table bench
}
table bench {
  ^echo\\.bench\\.test\$ 127.0.0.1:$BACKEND
  ^sink\\.bench\\.test\$ 127.0.0.1:$((BACKEND + 1))
  ^source\\.bench\\.test\$ 127.0.0.1:$((BACKEND + 2))
  ^.*\\.wild\\.bench\\.test\$ 127.0.0.1:$BACKEND
}
EOF

# --- start ---------------------------------------------------------------------------------------
declare -A PROC
start() { # name, command...
  local name=$1; shift
  "$@" >"$WORK/$name.out" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  PROC[$name]=$pid
}

start_proxy() {
  case "$1" in
    haproxy) start haproxy $PIN_PROXY haproxy -db -f "$CONF/haproxy.cfg" ;;
    nginx) start nginx $PIN_PROXY nginx -c "$CONF/nginx.conf" -e "$CONF/nginx-error.log" ;;
    sniproxy) start sniproxy $PIN_PROXY sniproxy -f -c "$CONF/sniproxy.conf" ;;
    sniway) SNIWAY_LOG=warn start sniway $PIN_PROXY "$BIN/sniway" run --workers "$WORKERS" \
      "${SNIWAY_FILES[@]}" ;;
  esac
}
stop_proxy() {
  local p=${PROC[$1]}
  kill "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.05; done
  kill -9 "$p" 2>/dev/null || true
}
# Memory growth is measured on a fresh process: a proxy that has already served the other
# scenarios reuses memory it freed, which would hide what an idle connection costs.
restart_proxy() {
  stop_proxy "$1"
  start_proxy "$1"
  wait_port "${PORT[$1]}"
  sleep 0.3
}

start backends $PIN_LOAD "$LOADGEN" backends --base-port $BACKEND --max-seconds 7200
wait_port $BACKEND
for t in haproxy nginx sniproxy sniway; do has $t && start_proxy $t; done
for t in haproxy nginx sniproxy sniway; do has $t && wait_port "${PORT[$t]}"; done
sleep 0.3

# A proxy's processes: the one started and its children (nginx's worker, sniproxy's binder).
pids_of() {
  local p=${PROC[$1]} kids
  kids=$(pgrep -P "$p" 2>/dev/null | paste -sd, || true)
  if [ -n "$kids" ]; then echo "$p,$kids"; else echo "$p"; fi
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "kernel: $(uname -r); cpus: $NCPU; $(grep -m1 'model name' /proc/cpuinfo | sed 's/\t//')"
  has haproxy && echo "haproxy: $(haproxy -v | head -1)"
  has nginx && echo "nginx: $(nginx -v 2>&1)"
  has sniproxy && echo "sniproxy: $(sniproxy -V 2>&1 | head -1)"
  echo "sniway: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) --workers $WORKERS"
  echo "rounds: $ROUNDS"
  echo "network: $BENCH_NETWORK"
} | tee "$OUT/environment.txt" >&2

# --- scenarios -----------------------------------------------------------------------------------
if [ "$SMOKE" = 1 ]; then
  RATE_N=200; LAT_N=50; SECS=2; BULK_S=0.3; PP_N=300; IDLE_N=100; TLS_N=50
fi

IFS=, read -r -a TARGETS <<<"$ONLY"
IFS=, read -r -a CASES <<<"$SCENARIOS"
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  # Rotate the order each round so no target always runs first or last.
  n=${#TARGETS[@]}
  for c in "${CASES[@]}"; do
    want "$c" || continue
    for i in $(seq 0 $((n - 1))); do
      t=${TARGETS[$(((i + round) % n))]}
      # shellcheck disable=SC2046
      args=($(scenario_args "$c"))
      if [ "$c" = tls-handshake ]; then
        # Only the proxies configured to terminate TLS take part.
        [ -n "${TLS_PORT[$t]:-}" ] || continue
        extra=(--target "127.0.0.1:${TLS_PORT[$t]}" --label "$t" --proxy-pid "$(pids_of "$t")")
      elif [ "$t" = direct ]; then
        extra=(--direct --target "127.0.0.1:$BACKEND" --label direct)
      else
        [ "$c" = idle ] && restart_proxy "$t"
        extra=(--target "127.0.0.1:${PORT[$t]}" --label "$t" --proxy-pid "$(pids_of "$t")")
      fi
      line=$($PIN_LOAD "$LOADGEN" "${args[@]}" "${extra[@]}") || line=""
      if [ -z "$line" ]; then
        echo "  $c $t: no result" >&2
        [ "$SMOKE" = 1 ] && exit 1
        continue
      fi
      echo "{\"case\":\"$c\",\"round\":$round,\"result\":$line}" >>"$RESULTS"
      [ "$SMOKE" = 1 ] && echo "  $c $t: $line" >&2
    done
  done
done

status=0
python3 bench/summarize.py "$RESULTS" >"$OUT/summary.md" || status=$?
cat "$OUT/summary.md"
echo "results: $RESULTS" >&2
# The smoke run checks that every scenario ran without errors; it never judges speed.
[ "$SMOKE" = 1 ] && exit $status
exit 0
