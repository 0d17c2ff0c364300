#!/usr/bin/env bash
# compare.sh — side-by-side gRPC (h2c) forwarding benchmark of existing
# proxies, one proxy core each, on a 2-core box.
#
# Layout (everything on 127.0.0.1):
#   backends  4 x grpc-go interop server (grpc.testing.TestService),
#             ports 50051-50054, pinned to core $LG_CPU with the load generator
#             (CORES=2: load generator and backends on every core, see below)
#   peers     direct   client -> backend 50051 (no proxy; the physical limit)
#             nginx    :18081  peers/nginx.conf   (grpc_pass, upstream keepalive)
#             haproxy  :18082  peers/haproxy.cfg  (mode http, proto h2 both sides)
#             caddy    :18083  peers/Caddyfile    (reverse_proxy, versions h2c 2)
#             <extra>  :18091+ any PEER_<NAME>='start command' from the environment
#             every proxy is pinned to core $PX_CPU and runs one worker/thread
#             (GOMAXPROCS=1 for Go peers)
#   loads     l1  h2load -c 1  -m 100 -n $N   EmptyCall (raw gRPC frame)
#             l2  h2load -c 32 -m 10  -n $N   EmptyCall
#             l3-R  ghz --connections 1 -c W --rps R -z $GHZ_DUR (W = 16, or R/250
#                 above 4,000 calls/s: enough workers for 4 ms per call)
#                 UnaryCall, 1 KiB request payload + 1 KiB response; p50, p99 and
#                 p99.9 (nearest rank over every call) added over direct's in the
#                 same rep; "l3-rates" is l3-R for every R in $L3_RATES, and
#                 "l3" is l3-$GHZ_RPS under its old name
#             big-unary   h2load -c 1 -m 4 -n $BIG_N UnaryCall, 1 MiB each way
#             big-stream  h2load -c 1 -n 1 StreamingOutputCall, $STREAM_MIB x 1 MiB
#                 ("big" is both); MB/s and MB per proxy-CPU-second, and the
#                 response bytes received must equal what the backend sent
#             hs  (TLS=1 only) h2load -c $HS_CONNS -n $HS_CONNS, $HS_ROUNDS times:
#                 one request per new TLS connection, i.e. full handshakes
#   order     per core count: per load: rep 1 (A B C D ...), rep 2 (A B C D ...), ...
#
# CORES="1 2" runs everything once per core count, restarting the peers: with
# one core, as above; with two, every proxy is pinned to cores 0,1 with two
# workers (nginx worker_processes, HAProxy nbthread, GOMAXPROCS for Go peers)
# and the load generator and backends are allowed on both cores too.
#
# TLS=1: the backends serve TLS (a CA and a certificate for localhost and
# 127.0.0.1 made with openssl in $RUN/tls), every proxy terminates TLS with
# ALPN h2 on its listener (peers/*-tls* configs) and speaks TLS h2 to the
# backends, verifying them against the CA; the clients speak TLS too. Run as
# root, it also starts tlsobserve.py to count each peer's upstream handshakes
# and how many of them resumed a session.
#
# Adding a peer (run.sh adds Sightline this way):
#   PEER_SIGHTLINE='/path/to/sightline --config {RUNDIR}/sightline.yaml' \
#     ./compare.sh
# Placeholders substituted in the command before it starts:
#   {PORT}      the listen port assigned to the peer (18091, 18092, ...)
#   {BACKENDS}  127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053,127.0.0.1:50054
#   {RUNDIR}    a scratch dir for the peer ($RUN/<name>)
# The command is started as `GOMAXPROCS=$cores taskset -c $PX_CPU bash -c "exec CMD"`,
# so the PID we measure is the proxy itself (children are summed in RSS/CPU).
# The peer must serve prior-knowledge h2c on 127.0.0.1:{PORT} and forward
# /grpc.testing.TestService/* round-robin per request to the four backends.
# With TLS=1 the environment has BENCH_TLS_DIR: serve TLS (ALPN h2) with
# $BENCH_TLS_DIR/server.pem and server.key, and verify the TLS backends with
# $BENCH_TLS_DIR/ca.pem (their certificate names localhost and 127.0.0.1).
#
# Knobs (env): PEERS="direct nginx haproxy caddy"  REPS=3  N=200000
#   LOADS="l1 l2 l3-rates"  L3_RATES="500 2000 10000"  GHZ_RPS=2000  GHZ_DUR=10s
#   CORES=1 (or "1 2")  TLS=0  OBS=0  BIG_N=200  STREAM_MIB=1024  HS_CONNS=200  HS_ROUNDS=10
#   LG_CPU=0  PX_CPU=1  SCRATCH=/tmp/bench  RESULTS_MD=<path>  (default: $RUN/report.md only)
#
# Output: $RUN/results.tsv (one row per run), $RUN/raw/* (tool output),
#         $RUN/report.md (machine facts, checks, tables), printed at the end.
# Only processes started by this script are stopped, by PID.

set -uo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PEERS_DIR=$BENCH/peers
PROTO_DIR=$BENCH/proto
PROTO=$PROTO_DIR/test.proto
SCRATCH=${SCRATCH:-/tmp/bench}
RUN=${RUN:-$SCRATCH/run-$(date +%Y%m%d-%H%M%S)}
REPS=${REPS:-3}
N=${N:-200000}
WARM_N=${WARM_N:-20000}
LOADS=${LOADS:-"l1 l2 l3-rates"}
L3_RATES=${L3_RATES:-"500 2000 10000"}
GHZ_RPS=${GHZ_RPS:-2000}
GHZ_DUR=${GHZ_DUR:-10s}
CORES=${CORES:-1}
TLS=${TLS:-0}
# OBS=1: every proxy logs every call, and Sightline also pushes its stats to
# statsd and samples 1 % of traces for OTLP (sightline-peer.sh); HAProxy
# logs an httplog line per call to its output, nginx its access log to a
# file. Caddy is left as it is.
OBS=${OBS:-0}
export BENCH_OBS=$OBS
BIG_N=${BIG_N:-200}
STREAM_MIB=${STREAM_MIB:-1024}
HS_CONNS=${HS_CONNS:-200}
HS_ROUNDS=${HS_ROUNDS:-10}
LG_CPU=${LG_CPU:-0}
PX_CPU=${PX_CPU:-1}
PEERS=${PEERS:-"direct nginx haproxy caddy"}
SERVER=${SERVER:-$HOME/go/bin/server}
CADDY=${CADDY:-$HOME/go/bin/caddy}
GHZ=${GHZ:-$HOME/go/bin/ghz}
H2LOAD=${H2LOAD:-h2load}
NGHTTP=${NGHTTP:-nghttp}
PY=${PY:-/usr/bin/python3}
BACKEND_PORTS=(50051 50052 50053 50054)
BACKENDS_CSV=$(printf '127.0.0.1:%s,' "${BACKEND_PORTS[@]}"); BACKENDS_CSV=${BACKENDS_CSV%,}
EMPTY_FRAME=$PEERS_DIR/empty.grpc          # 00 00 00 00 00 = uncompressed, 0-byte message
UNARY_1K=$PEERS_DIR/unary-1k.json          # SimpleRequest{response_size:1024, payload:1 KiB}
GRPC_PATH=/grpc.testing.TestService/EmptyCall

# "l3-rates" and "big" stand for several loads; anything else must be a known load
loads=""
for l in $LOADS; do
  case $l in
    l3-rates) for r in $L3_RATES; do loads="$loads l3-$r"; done ;;
    big) loads="$loads big-unary big-stream" ;;
    l1|l2|l3|big-unary|big-stream) loads="$loads $l" ;;
    l3-[0-9]*) [[ $l =~ ^l3-[0-9]+$ ]] || { echo "bad load $l" >&2; exit 1; }; loads="$loads $l" ;;
    hs) [ "$TLS" = 1 ] || { echo "load hs needs TLS=1" >&2; exit 1; }; loads="$loads $l" ;;
    *) echo "unknown load $l (l1 l2 l3 l3-<rate> l3-rates big-unary big-stream big hs)" >&2; exit 1 ;;
  esac
done
LOADS=${loads# }
for c in $CORES; do [[ $c =~ ^[12]$ ]] || { echo "CORES takes 1 and/or 2, not $c" >&2; exit 1; }; done
SCHEME=http; [ "$TLS" = 1 ] && SCHEME=https

mkdir -p "$RUN/raw"
TSV=$RUN/results.tsv
CHECKS=$RUN/checks.tsv
MEM=$RUN/mem.tsv
WINDOWS=$RUN/windows.tsv   # load rep peer cores t0 t1 of every measured run and check
LOG=$RUN/run.log
: >"$CHECKS"; : >"$MEM"; : >"$WINDOWS"
printf 'load\trep\tpeer\trps\tmean_ms\tmax_ms\tp50_ms\tp90_ms\tp99_ms\tok\tbad\terrinfo\twall_s\tpx_cpu_s\tcpu0_pct\tcpu1_pct\tbe_split\trss_kb\thwm_kb\tcores\tp999_ms\tbytes\n' >"$TSV"

log() { echo "[$(date +%T)] $*" | tee -a "$LOG" >&2; }

declare -A PORT PID KIND CMD
STARTED=()        # every PID this script started (backends and peers)
BACKEND_PIDS=()

# ---------------------------------------------------------------- helpers
ticks() {  # utime+stime (clock ticks) of one pid; 0 if gone
  local s; s=$(cat /proc/"$1"/stat 2>/dev/null) || { echo 0; return; }
  s=${s##*) }; set -- $s; echo $(( ${12} + ${13} ))
}
tree() {  # pid and all descendants
  local p=$1 c; echo "$p"
  for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree "$c"; done
}
tree_ticks() { local t=0 p; for p in $(tree "$1"); do t=$(( t + $(ticks "$p") )); done; echo $t; }
tree_mem() {  # "rss_kb hwm_kb" summed over the process tree
  local r=0 h=0 p a b
  for p in $(tree "$1"); do
    a=$(awk '/^VmRSS:/{print $2}' /proc/"$p"/status 2>/dev/null); b=$(awk '/^VmHWM:/{print $2}' /proc/"$p"/status 2>/dev/null)
    r=$(( r + ${a:-0} )); h=$(( h + ${b:-0} ))
  done; echo "$r $h"
}
cpustat() { awk -v a="cpu$LG_CPU" -v b="cpu$PX_CPU" '$1==a||$1==b{t=0;for(i=2;i<=NF;i++)t+=$i; print $1, t, t-$5-$6}' /proc/stat; }
busy_pct() {  # $1 before-snapshot, $2 after-snapshot, $3 cpuN -> busy %
  local bt bb at ab
  read -r _ bt bb < <(grep "^$3 " <<<"$1"); read -r _ at ab < <(grep "^$3 " <<<"$2")
  awk -v t=$((at-bt)) -v b=$((ab-bb)) 'BEGIN{ if (t>0) printf "%.0f", 100*b/t; else print "NA" }'
}
be_ticks() { local p out=""; for p in "${BACKEND_PIDS[@]}"; do out+="$(ticks "$p") "; done; echo "$out"; }
be_split() {  # percent of backend CPU per backend port during the run
  awk -v a="$1" -v b="$2" 'BEGIN{ n=split(a,x," "); split(b,y," "); t=0
    for(i=1;i<=n;i++){d[i]=y[i]-x[i]; t+=d[i]}
    s=""; for(i=1;i<=n;i++){ s=s (i>1?"/":"") (t>0?sprintf("%.0f",100*d[i]/t):"NA") } print s }'
}
upstream_conns() {  # established TCP connections from the proxy tree to the backends
  local pids; pids=$(tree "$1" | paste -sd'|')
  ss -Htnp state established "( $(printf 'dport = :%s or ' "${BACKEND_PORTS[@]}" | sed 's/ or $//') )" 2>/dev/null | grep -cE "pid=($pids),"
}
listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
wait_listen() { local i; for i in $(seq 1 100); do listening "$1" && return 0; sleep 0.1; done; return 1; }

stop_pid() {  # TERM, then KILL after 5 s; only PIDs we started
  local p=$1 i
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null
  for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null
}
cleanup() {
  local i
  for (( i=${#STARTED[@]}-1; i>=0; i-- )); do stop_pid "${STARTED[i]}"; done
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- preflight
for p in "${BACKEND_PORTS[@]}" 18081 18082 18083; do
  if listening "$p"; then echo "port $p already in use; stop whatever holds it first" >&2; exit 1; fi
done
# 50051-50054 lie in Linux's ephemeral range: a client socket of any program
# may hold one as its local port (TIME-WAIT for a minute), and the backend's
# bind then fails. Wait for such sockets to go.
for p in "${BACKEND_PORTS[@]}"; do
  for i in $(seq 1 75); do ss -Htan "sport = :$p" 2>/dev/null | grep -q . || break
    [ "$i" = 1 ] && echo "port $p is some connection's local port; waiting up to 75 s for it to close" >&2; sleep 1; done
done
for t in "$SERVER" "$CADDY" "$GHZ"; do [ -x "$t" ] || { echo "missing $t" >&2; exit 1; }; done
for t in "$H2LOAD" "$NGHTTP" nginx haproxy taskset ss "$PY" jq $([ "$TLS" = 1 ] && echo openssl); do command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }; done

# extra peers from PEER_<NAME> env vars
extra_port=18091
for v in $(compgen -A variable | grep -E '^PEER_[A-Za-z0-9_]+$' | sort); do
  name=$(echo "${v#PEER_}" | tr 'A-Z' 'a-z')
  cmd=${!v}
  mkdir -p "$RUN/$name"
  cmd=${cmd//\{PORT\}/$extra_port}; cmd=${cmd//\{BACKENDS\}/$BACKENDS_CSV}; cmd=${cmd//\{RUNDIR\}/$RUN/$name}
  if listening "$extra_port"; then echo "port $extra_port already in use" >&2; exit 1; fi
  KIND[$name]=extra; PORT[$name]=$extra_port; CMD[$name]=$cmd
  PEERS="$PEERS $name"
  extra_port=$((extra_port+1))
done

# ---------------------------------------------------------------- machine facts
{
  echo "## Machine"
  echo
  echo "- date: $(date -u +%FT%TZ)"
  echo "- nproc: $(nproc)"
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') (family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), $(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2 | tr -d ' ') MHz; hypervisor: $(lscpu 2>/dev/null | awk -F: '/Hypervisor vendor/{gsub(/ /,"",$2); print $2}'))"
  echo "- kernel: $(uname -r)"
  echo "- memory: $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "- OS: $(. /etc/os-release; echo "$PRETTY_NAME")"
  echo "- nginx: $(nginx -v 2>&1 | sed 's/.*version: //')"
  echo "- haproxy: $(haproxy -v 2>&1 | head -1 | awk '{print $3}')"
  echo "- caddy: $(go version -m "$CADDY" 2>/dev/null | awk '$2=="github.com/caddyserver/caddy/v2"{print $3; exit}') ($(go version "$CADDY" 2>/dev/null | awk '{print $2}'))"
  echo "- backend: grpc-go interop server $(go version -m "$SERVER" 2>/dev/null | awk '$1=="mod"&&$2=="google.golang.org/grpc"{print $3}') ($(go version "$SERVER" 2>/dev/null | awk '{print $2}'))"
  echo "- h2load: $($H2LOAD --version 2>&1 | head -1)"
  echo "- ghz: $(go version -m "$GHZ" 2>/dev/null | awk '$1=="mod"{print $3; exit}') ($($GHZ --version 2>&1))"
  for name in $PEERS; do [ "${KIND[$name]:-}" = extra ] && echo "- $name: \`${CMD[$name]}\`"; done
  echo "- pinning: 1 core: load generator + backends on cpu$LG_CPU, proxy on cpu$PX_CPU, one worker; 2 cores: proxy on cpu0,1 with two workers, load generator and backends on cpu0,1"
  echo "- params: REPS=$REPS N=$N LOADS=\"$LOADS\" CORES=\"$CORES\" TLS=$TLS GHZ_DUR=$GHZ_DUR BIG_N=$BIG_N STREAM_MIB=$STREAM_MIB HS_CONNS=$HS_CONNS HS_ROUNDS=$HS_ROUNDS"
  [ "$TLS" = 1 ] && echo "- TLS: $(openssl version); ECDSA P-256 certificates; every hop TLS (ALPN h2), backends verified against the run's CA"
  [ "$OBS" = 1 ] && echo "- observability on (OBS=1): Sightline's JSON access log to a file, stats to statsd every second, 1 % of traces sampled for OTLP; HAProxy's httplog line per call to its output; nginx's access log to a file; Caddy as it is"
} >"$RUN/machine.md"
cat "$RUN/machine.md" >&2

# ---------------------------------------------------------------- TLS material, big frames
TLS_DIR=$RUN/tls
if [ "$TLS" = 1 ]; then
  # ECDSA P-256, the usual choice for a new deployment; one CA, one server certificate
  # for localhost and 127.0.0.1, used by the backends and by every proxy's listener
  mkdir -p "$TLS_DIR"
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj /CN=bench-ca \
      -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
      -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' >"$TLS_DIR/ext.cnf" &&
    openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" -CAcreateserial \
      -days 7 -extfile "$TLS_DIR/ext.cnf" -out "$TLS_DIR/server.pem"
  } >"$RUN/raw/openssl.log" 2>&1 || { echo "openssl failed: see $RUN/raw/openssl.log" >&2; exit 1; }
  cat "$TLS_DIR/server.pem" "$TLS_DIR/server.key" >"$TLS_DIR/server-full.pem"   # HAProxy's crt: chain and key
  export BENCH_TLS_DIR=$TLS_DIR
fi
# The big loads send raw gRPC frames with h2load, which counts the DATA bytes it
# receives: a response cut short, or a stream reset, shows as fewer bytes than the
# backend sends (RESP_BYTES, computed here from the protobuf encoding).
BIG_UNARY=$RUN/big-unary.grpc
BIG_STREAM=$RUN/big-stream.grpc
declare -A REQ_BYTES RESP_BYTES
if [[ " $LOADS " == *" big-"* ]]; then
  read -r REQ_BYTES[big-unary] RESP_BYTES[big-unary] REQ_BYTES[big-stream] RESP_BYTES[big-stream] < <("$PY" - "$BIG_UNARY" "$BIG_STREAM" "$STREAM_MIB" <<'EOF'
import sys
def varint(n):
    b = b""
    while True:
        x = n & 0x7F; n >>= 7
        if n: b += bytes([x | 0x80])
        else: return b + bytes([x])
def field(num, payload): return varint(num << 3 | 2) + varint(len(payload)) + payload
def frame(msg): return b"\0" + len(msg).to_bytes(4, "big") + msg
MIB = 1 << 20
payload = field(2, bytes(MIB))                                  # Payload{body: 1 MiB of zeros}
unary = frame(varint(2 << 3) + varint(MIB) + field(3, payload))  # SimpleRequest{response_size, payload}
stream = frame(b"".join(field(2, varint(1 << 3) + varint(MIB)) for _ in range(int(sys.argv[3]))))
open(sys.argv[1], "wb").write(unary); open(sys.argv[2], "wb").write(stream)
resp = len(frame(field(1, payload)))                            # SimpleResponse / StreamingOutputCallResponse
print(len(unary), resp, len(stream), resp * int(sys.argv[3]))
EOF
  )
fi

# ---------------------------------------------------------------- start
log "run dir: $RUN"
for p in "${BACKEND_PORTS[@]}"; do
  tlsargs=(--use_tls=false); [ "$TLS" = 1 ] && tlsargs=(--use_tls=true --tls_cert_file "$TLS_DIR/server.pem" --tls_key_file "$TLS_DIR/server.key")
  GOMAXPROCS=1 taskset -c "$LG_CPU" "$SERVER" --port "$p" "${tlsargs[@]}" >"$RUN/raw/backend-$p.log" 2>&1 &
  BACKEND_PIDS+=($!); STARTED+=($!)
done
for p in "${BACKEND_PORTS[@]}"; do wait_listen "$p" || { log "backend $p did not start"; exit 1; }; done
log "backends up: ${BACKEND_PIDS[*]}"
# TLS=1: every TLS hello to and from the backends, to count the handshakes each
# peer makes upstream and how many of them resume a session (tlsobserve.py)
HELLOS=$RUN/tls-hellos.txt
if [ "$TLS" = 1 ]; then
  if [ "$(id -u)" = 0 ]; then
    "$PY" "$BENCH/tlsobserve.py" "${BACKEND_PORTS[0]}" "${BACKEND_PORTS[3]}" >"$HELLOS" 2>"$RUN/raw/tlsobserve.log" &
    STARTED+=($!)
    for i in $(seq 1 50); do grep -q READY "$HELLOS" && break; sleep 0.1; done
    grep -q READY "$HELLOS" || log "tlsobserve.py did not start (see raw/tlsobserve.log): no upstream handshake counts"
  else
    log "not root: upstream TLS handshakes are not counted"
  fi
fi
if [ "$OBS" = 1 ]; then
  # A statsd server that takes the datagrams and drops them, so that the
  # sink sends as it would to a real one (with nothing there, each send
  # fails with connection refused).
  taskset -c "$LG_CPU" "$PY" -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 8125))
while True:
    s.recv(65536)' >"$RUN/raw/statsd.log" 2>&1 &
  STARTED+=($!)
fi
BASE_PIDS=("${STARTED[@]}")   # backends and the observer live through every round

set_cores() {  # cores: pinning for the round, backends moved, peer configs written
  local c=$1 d=$RUN/conf-${1}c sfx="" p
  CUR_CORES=$c
  if [ "$c" = 1 ]; then PX_SET=$PX_CPU LG_SET=$LG_CPU; else PX_SET=0,1 LG_SET=0,1; fi
  for p in "${BACKEND_PIDS[@]}"; do taskset -a -p -c "$LG_SET" "$p" >/dev/null; done
  [ "$TLS" = 1 ] && sfx=-tls
  mkdir -p "$d"
  # the templates run one worker; the line that says so must be there to be changed
  grep -q '^worker_processes 1;' "$PEERS_DIR/nginx$sfx.conf" && grep -q '^ *nbthread 1$' "$PEERS_DIR/haproxy$sfx.cfg" ||
    { log "peer configs lack the worker line"; exit 1; }
  for p in "nginx$sfx.conf nginx.conf" "haproxy$sfx.cfg haproxy.cfg" "Caddyfile$sfx Caddyfile"; do
    set -- $p
    local obs=()
    [ "$OBS" = 1 ] && obs=(-e 's/^\( *\)# no "log" line: logging off$/\1log stdout format raw local0/'
      -e 's/^\( *\)mode http$/\1mode http\n\1log global\n\1option httplog/'
      -e "s#^\\( *\\)access_log off;#\\1access_log $RUN/nginx/access.log;#")
    sed -e "s/^worker_processes 1;/worker_processes $c;/" -e "s/^\( *\)nbthread 1$/\1nbthread $c/" \
      -e "s#{TLS_DIR}#$TLS_DIR#g" "${obs[@]}" "$PEERS_DIR/$1" >"$d/$2"
  done
  CONF=$d
}

start_peer() {
  local name=$1
  case $name in
    direct)
      KIND[$name]=direct; PORT[$name]=${BACKEND_PORTS[0]}; PID[$name]=${BACKEND_PIDS[0]}; return 0 ;;
    nginx)
      KIND[$name]=builtin; PORT[$name]=18081
      mkdir -p "$RUN/nginx/tmp"
      taskset -c "$PX_SET" nginx -p "$RUN/nginx/" -c "$CONF/nginx.conf" -g "pid $RUN/nginx/nginx.pid;" >>"$RUN/raw/nginx.log" 2>&1 &
      ;;
    haproxy)
      KIND[$name]=builtin; PORT[$name]=18082
      taskset -c "$PX_SET" haproxy -db -f "$CONF/haproxy.cfg" >>"$RUN/raw/haproxy.log" 2>&1 &
      ;;
    caddy)
      KIND[$name]=builtin; PORT[$name]=18083
      mkdir -p "$RUN/caddy"
      GOMAXPROCS=$CUR_CORES XDG_DATA_HOME=$RUN/caddy XDG_CONFIG_HOME=$RUN/caddy \
        taskset -c "$PX_SET" "$CADDY" run --config "$CONF/Caddyfile" --adapter caddyfile >>"$RUN/raw/caddy.log" 2>&1 &
      ;;
    *)
      [ "${KIND[$name]:-}" = extra ] || { log "unknown peer $name"; return 1; }
      GOMAXPROCS=$CUR_CORES taskset -c "$PX_SET" bash -c "exec ${CMD[$name]}" >>"$RUN/raw/$name.log" 2>&1 &
      ;;
  esac
  PID[$name]=$!; STARTED+=($!)
  if ! wait_listen "${PORT[$name]}"; then
    log "peer $name did not listen on ${PORT[$name]}; see $RUN/raw/$name.log"; return 1
  fi
}

# ---------------------------------------------------------------- correctness
ghz_summary() {  # ghz json -> "rps p50 p90 p99 avg max okcount badcount errinfo p999"
  "$PY" - "$1" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("NA NA NA NA NA NA 0 0 unparsable NA"); sys.exit()
lat = {int(x["percentage"]): x["latency"] / 1e6 for x in (d.get("latencyDistribution") or [])}
sc = d.get("statusCodeDistribution") or {}
ok = sc.get("OK", 0)
bad = sum(v for k, v in sc.items() if k != "OK")
errs = d.get("errorDistribution") or {}
info = ";".join(f"{k}={v}" for k, v in sc.items() if k != "OK")
if errs:
    info += ("|" if info else "") + ";".join(f"{k[:120]}={v}" for k, v in list(errs.items())[:3])
info = info.replace(" ", "_").replace("\t", "_") or "-"
g = lambda p: f"{lat[p]:.3f}" if p in lat else "NA"
p999 = f"{d['p999'] / 1e6:.3f}" if d.get("p999") is not None else "NA"
print(f"{d.get('rps', 0):.1f} {g(50)} {g(90)} {g(99)} {d.get('average', 0)/1e6:.3f} {d.get('slowest', 0)/1e6:.3f} {ok} {bad} {info} {p999}")
EOF
}
run_ghz() {  # port call datafile-or-json outfile extra-args...
  local port=$1 call=$2 data=$3 out=$4; shift 4
  local dflag=(-d "$data"); [ -f "$data" ] && dflag=(-D "$data")
  local tflag=(--insecure); [ "$TLS" = 1 ] && tflag=(--cacert "$TLS_DIR/ca.pem" --cname localhost)
  taskset -c "$LG_SET" "$GHZ" --cpus 1 "${tflag[@]}" --import-paths "$PROTO_DIR" --proto "$PROTO" \
    --call "grpc.testing.TestService.$call" "${dflag[@]}" -O json "$@" "127.0.0.1:$port" >"$out.full" 2>"$out.err"
  # ghz's latencyDistribution stops at p99: p99.9 is the nearest-rank percentile
  # over every call's latency in the details, which are then dropped
  jq '(.details // [] | map(.latency) | sort) as $l
      | .p999 = (if ($l | length) > 0 then $l[(($l | length) * 999 / 1000 | ceil) - 1] else null end)
      | del(.details)' "$out.full" >"$out" 2>/dev/null || cp "$out.full" "$out"; rm -f "$out.full"
}
h2load_grpc() {  # port path datafile n c m outfile: one h2load run of raw gRPC frames
  taskset -c "$LG_SET" "$H2LOAD" -c "$5" -m "$6" -n "$4" -d "$3" \
    -H 'content-type: application/grpc' -H 'te: trailers' "$SCHEME://127.0.0.1:$1$2" >"$7" 2>&1
}
check_peer() {
  local name=$1 port=${PORT[$1]} f res verdict spec call mode data args want
  # 1. raw h2 exchanges (nghttp -v): status 200, a DATA frame, then grpc-status 0 in a
  #    trailing HEADERS frame; with the interop echo headers, the initial one must come
  #    back before DATA and the -bin trailer after it (i.e. in the trailers)
  local hdrs
  for spec in "EmptyCall|plain" "UnaryCall|echo-metadata"; do
    IFS='|' read -r call mode <<<"$spec"
    f=$RUN/raw/check-$name-${CUR_CORES}c-nghttp-$call.txt
    hdrs=(-H 'content-type: application/grpc' -H 'te: trailers')
    [ "$mode" = echo-metadata ] && hdrs+=(-H 'x-grpc-test-echo-initial: hello' -H 'x-grpc-test-echo-trailing-bin: AQID')
    "$NGHTTP" -nv -d "$EMPTY_FRAME" "${hdrs[@]}" "$SCHEME://127.0.0.1:$port/grpc.testing.TestService/$call" >"$f" 2>&1
    verdict=$(awk -v mode="$mode" '
        /recv \(stream_id=[0-9]+\) :status:/{st=$NF}
        /recv DATA frame/{data=1}
        /recv \(stream_id=[0-9]+\) grpc-status:/{gs=$NF; gsafter=data}
        /recv \(stream_id=[0-9]+\) x-grpc-test-echo-initial:/{ei=$NF; eibefore=!data}
        /recv \(stream_id=[0-9]+\) x-grpc-test-echo-trailing-bin:/{et=$NF; etafter=data}
        END{ if(st!="200") { print "FAIL:status=" st; exit }
             if(!data) { print "FAIL:no-DATA-frame"; exit }
             if(gs=="") { print "FAIL:no-grpc-status(trailers-lost)"; exit }
             if(gs!="0") { print "FAIL:grpc-status=" gs; exit }
             if(!gsafter) { print "FAIL:grpc-status-not-in-trailers"; exit }
             if(mode=="echo-metadata") {
               if(ei!="hello" || !eibefore) { print "FAIL:initial-metadata-lost"; exit }
               if(et!="AQID" || !etafter) { print "FAIL:trailing-metadata-lost"; exit } }
             print "ok" }' "$f")
    printf '%s\tnghttp %s %s\t%s\t%s\n' "$name@${CUR_CORES}c" "$call" "$( [ "$mode" = plain ] && echo trailers || echo 'echo metadata+trailer')" "$verdict" "$(grep -c 'recv (stream_id=' "$f") header fields received" >>"$CHECKS"
  done
  # 2. real gRPC client (ghz): EmptyCall, UnaryCall 1 KiB, UnaryCall 256 KiB response (flow
  #    control), error status (trailers-only response), server streaming, bidi streaming
  for spec in "EmptyCall|{}|-n 2000 -c 16 --connections 1|OK" \
              "UnaryCall|$UNARY_1K|-n 2000 -c 16 --connections 1|OK" \
              "UnaryCall|{\"response_size\":262144}|-n 200 -c 8 --connections 1|OK" \
              "UnaryCall|{\"response_status\":{\"code\":5,\"message\":\"bench\"}}|-n 200 -c 8 --connections 1|NotFound" \
              "StreamingOutputCall|{\"response_parameters\":[{\"size\":1024},{\"size\":1024},{\"size\":1024},{\"size\":1024},{\"size\":1024}]}|-n 200 -c 8 --connections 1|OK" \
              "FullDuplexCall|[{\"response_parameters\":[{\"size\":1024}]},{\"response_parameters\":[{\"size\":1024}]},{\"response_parameters\":[{\"size\":1024}]}]|-n 200 -c 8 --connections 1|OK"; do
    IFS='|' read -r call data args want <<<"$spec"
    f=$RUN/raw/check-$name-${CUR_CORES}c-$call-$(echo "$data$want" | md5sum | cut -c1-6).json
    # shellcheck disable=SC2086
    run_ghz "$port" "$call" "$data" "$f" $args
    res=$(jq -r --arg w "$want" '.statusCodeDistribution as $s | ($s|add) as $t | if ($s[$w] // 0) == $t and $t > 0 then "ok" else "FAIL:" + ($s|tostring) + " " + ((.errorDistribution // {})|tostring) end' "$f" 2>/dev/null || echo "FAIL:no-output $(head -c 200 "$f.err")")
    local label=$call; case $call:$data in *262144*) label="$call 256KiB-resp";; *response_status*) label="$call error-status(NotFound, trailers-only)";; *unary-1k*) label="$call 1KiB";; Streaming*) label="$call server-stream 5x1KiB";; FullDuplex*) label="$call bidi 3x1KiB";; esac
    printf '%s\tghz %s\t%s\t%s\n' "$name@${CUR_CORES}c" "$label" "$res" "$(jq -c '.statusCodeDistribution' "$f" 2>/dev/null)" >>"$CHECKS"
  done
}

# ---------------------------------------------------------------- loads
h2load_row() {  # h2load output -> rps mean max p50 p90 p99 ok bad errinfo (TSV) ; "data" bytes on stderr-free line 2
  awk '
    function ms(v){ if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /^finished in/{ rps=$4 }
    /^requests:/{ total=$2; succ=$8; fail=$10; err=$12; to=$14 }
    /^status codes:/{ s2=$3; s3=$5; s4=$7; s5=$9 }
    /^time for request:/{ mn=ms($4); mx=ms($5); mean=ms($6) }
    END{ bad=total-s2; info="2xx=" s2 ",failed=" fail ",errored=" err ",timeout=" to ",4xx=" s4 ",5xx=" s5
         printf "%s\t%.3f\t%.3f\tNA\tNA\tNA\t%s\t%s\t%s", rps, mean, mx, s2+0, bad+0, info }' "$1"
}
h2load_data() {  # h2load output -> bytes of DATA received ("traffic: ... , 1.00GB (N) data")
  sed -n 's/^traffic:.*(\([0-9]*\)) data$/\1/p' "$1"
}
l3_workers() {  # rate -> ghz workers: 16 as always up to 4,000 calls/s, then enough
  # for 4 ms per call (Little's law), so that a slower peer is not held under
  # the rate by busy workers instead of showing its latency
  local w=$(( $1 / 250 )); [ "$w" -lt 16 ] && w=16; echo "$w"
}
measure() {  # load rep peer -> one TSV row
  local load=$1 rep=$2 name=$3 port=${PORT[$3]} pid=${PID[$3]}
  local out=$RUN/raw/$load-${CUR_CORES}c-$name-$rep
  local c0 c1 p0 p1 b0 b1 t0 t1 pxcpu r h row p999=NA bytes=NA
  c0=$(cpustat); b0=$(be_ticks); p0=$( [ "${KIND[$name]}" = direct ] && echo 0 || tree_ticks "$pid"); t0=$(date +%s.%N)
  case $load in
    l1|l2)
      local c m; if [ "$load" = l1 ]; then c=1 m=100; else c=32 m=10; fi
      h2load_grpc "$port" "$GRPC_PATH" "$EMPTY_FRAME" "$N" $c $m "$out.txt"
      row=$(h2load_row "$out.txt")
      ;;
    l3|l3-*)
      local rate=$GHZ_RPS; [ "$load" = l3 ] || rate=${load#l3-}
      run_ghz "$port" UnaryCall "$UNARY_1K" "$out.json" --connections 1 -c "$(l3_workers "$rate")" --rps "$rate" -z "$GHZ_DUR" --duration-stop=wait
      read -r rps p50 p90 p99 avg mx ok bad info p999 < <(ghz_summary "$out.json")
      row=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$rps" "$avg" "$mx" "$p50" "$p90" "$p99" "$ok" "$bad" "$info")
      ;;
    big-unary|big-stream)
      local path=/grpc.testing.TestService/UnaryCall f=$BIG_UNARY n=$BIG_N m=4 got want ok
      [ "$load" = big-stream ] && path=/grpc.testing.TestService/StreamingOutputCall f=$BIG_STREAM n=1 m=1
      h2load_grpc "$port" "$path" "$f" "$n" 1 "$m" "$out.txt"
      row=$(h2load_row "$out.txt"); got=$(h2load_data "$out.txt")
      ok=$(cut -f7 <<<"$row"); want=$(( n * RESP_BYTES[$load] ))
      # bytes moved through the proxy: requests sent (whole frames) + response DATA received
      bytes=$(( ok * REQ_BYTES[$load] + ${got:-0} ))
      if [ "${got:-0}" != "$want" ]; then   # short or long: the run counts as failed
        row=$(awk -F'\t' -v g="${got:-0}" -v w="$want" 'BEGIN{OFS="\t"} {$8=$8+1; $9=$9 ",data=" g "/" w; print}' <<<"$row")
      fi
      ;;
    hs)
      # new TLS connections, one request each: every h2load process starts without a
      # session cache, so each connection is a full handshake
      local i okc=0 badc=0 o b
      for i in $(seq 1 "$HS_ROUNDS"); do
        h2load_grpc "$port" "$GRPC_PATH" "$EMPTY_FRAME" "$HS_CONNS" "$HS_CONNS" 1 "$out-$i.txt"
        IFS=$'\t' read -r _ _ _ _ _ _ o b _ <<<"$(h2load_row "$out-$i.txt")"
        okc=$((okc + o)); badc=$((badc + b))
      done
      row=$(awk -v o=$okc -v b=$badc -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN{printf "%.1f\tNA\tNA\tNA\tNA\tNA\t%d\t%d\thandshakes=%d", o/(t1-t0), o, b, o+b}')
      ;;
  esac
  t1=$(date +%s.%N); c1=$(cpustat); b1=$(be_ticks)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$load" "$rep" "$name" "$CUR_CORES" "$t0" "$t1" >>"$WINDOWS"
  p1=$( [ "${KIND[$name]}" = direct ] && echo 0 || tree_ticks "$pid")
  pxcpu=$( [ "${KIND[$name]}" = direct ] && echo NA || awk -v d=$((p1-p0)) -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", d/hz}')
  if [ "${KIND[$name]}" = direct ]; then r=NA; h=NA; else read -r r h < <(tree_mem "$pid"); fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$load" "$rep" "$name" "$row" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')" "$pxcpu" \
    "$(busy_pct "$c0" "$c1" "cpu$LG_CPU")" "$(busy_pct "$c0" "$c1" "cpu$PX_CPU")" "$(be_split "$b0" "$b1")" "$r" "$h" \
    "$CUR_CORES" "$p999" "$bytes" >>"$TSV"
  tail -1 "$TSV" | awk -F'\t' '{printf "  %-10s %sc rep%s %-9s rps=%-9s mean/p50=%s/%s ms max=%s ms ok=%s bad=%s px_cpu=%ss cpu0=%s%% cpu1=%s%% split=%s p99.9=%s bytes=%s\n",$1,$20,$2,$3,$4,$5,$7,$6,$10,$11,$14,$15,$16,$17,$21,$22}' | tee -a "$LOG" >&2
}
warmup() {  # load peer
  local port=${PORT[$2]}
  case $1 in
    l1) h2load_grpc "$port" "$GRPC_PATH" "$EMPTY_FRAME" "$WARM_N" 1 100 /dev/null ;;
    l2) h2load_grpc "$port" "$GRPC_PATH" "$EMPTY_FRAME" "$WARM_N" 32 10 /dev/null ;;
    l3|l3-*) run_ghz "$port" UnaryCall "$UNARY_1K" "$RUN/raw/warm-$1-$2.json" --connections 1 -c 16 -n 2000 ;;
    big-*) h2load_grpc "$port" /grpc.testing.TestService/UnaryCall "$BIG_UNARY" 8 1 4 /dev/null ;;
    hs) h2load_grpc "$port" "$GRPC_PATH" "$EMPTY_FRAME" "$HS_CONNS" "$HS_CONNS" 1 /dev/null ;;
  esac
}

for cores in $CORES; do
  set_cores "$cores"
  log "=== $cores core(s): proxies on cpu$PX_SET, load generator and backends on cpu$LG_SET"
  ACTIVE=""; ROUND=()
  for name in $PEERS; do
    if start_peer "$name"; then
      ACTIVE="$ACTIVE $name"; log "started $name pid=${PID[$name]} port=${PORT[$name]}"
      [ "${KIND[$name]}" = direct ] || ROUND+=("${PID[$name]}")
    else printf '%s\tstart\tFAIL\tdid not listen\n' "$name@${cores}c" >>"$CHECKS"; fi
  done
  sleep 1
  for name in $ACTIVE; do   # idle RSS: after start, before any request
    [ "${KIND[$name]}" = direct ] && continue
    read -r r h < <(tree_mem "${PID[$name]}"); printf '%s\tidle\t%s\t%s\t%s\n' "$name" "$r" "$h" "$cores" >>"$MEM"
  done
  for name in $ACTIVE; do
    log "checking $name"; t0=$(date +%s.%N); check_peer "$name"
    printf 'checks\t1\t%s\t%s\t%s\t%s\n' "$name" "$cores" "$t0" "$(date +%s.%N)" >>"$WINDOWS"
  done
  for load in $LOADS; do
    log "load $load ($cores core(s)): warm-up"
    for name in $ACTIVE; do warmup "$load" "$name"; done
    for rep in $(seq 1 "$REPS"); do
      log "load $load rep $rep"
      for name in $ACTIVE; do sleep 0.5; measure "$load" "$rep" "$name"; done
    done
    if [ "$load" = l2 ]; then
      for name in $ACTIVE; do
        [ "${KIND[$name]}" = direct ] && continue
        read -r r h < <(tree_mem "${PID[$name]}"); printf '%s\tafter-l2\t%s\t%s\t%s\n' "$name" "$r" "$h" "$cores" >>"$MEM"
        printf '%s\tupstream-conns-after-l2\t%s\t0\t%s\n' "$name" "$(upstream_conns "${PID[$name]}")" "$cores" >>"$MEM"
      done
    fi
  done
  for name in $ACTIVE; do   # still alive at the end?
    [ "${KIND[$name]}" = direct ] && continue
    kill -0 "${PID[$name]}" 2>/dev/null || printf '%s\tend\tFAIL\tprocess died (see raw/%s.log)\n' "$name@${cores}c" "$name" >>"$CHECKS"
  done
  # stop this round's proxies (newest first) and forget their PIDs
  for (( i=${#ROUND[@]}-1; i>=0; i-- )); do stop_pid "${ROUND[i]}"; done
  STARTED=("${BASE_PIDS[@]}")
done
column -t -s $'\t' "$CHECKS" >&2

# ---------------------------------------------------------------- report
cleanup; trap - EXIT
"$PY" - "$RUN" "$REPS" "$N" "$GHZ_RPS" "$GHZ_DUR" "$LOADS" "$CORES" "$TLS" "$BIG_N" "$STREAM_MIB" "$HS_CONNS" "$HS_ROUNDS" >"$RUN/tables.md" <<'EOF'
import csv, statistics as st, sys, os
run, reps, n, ghz_rps, ghz_dur, loads, cores, tls, big_n, stream_mib, hs_conns, hs_rounds = sys.argv[1:13]
loads = loads.split(); cores = cores.split(); tls = tls == "1"
rows = list(csv.DictReader(open(os.path.join(run, "results.tsv")), delimiter="\t"))
mem = {}
for line in open(os.path.join(run, "mem.tsv")):
    p, when, r, h, c = line.rstrip("\n").split("\t")
    mem[(p, when, c)] = (int(r), int(h))
peers = []
for r in rows:
    if r["peer"] not in peers: peers.append(r["peer"])
def f(x):
    try: return float(x)
    except: return None
def sel(load, peer, c):
    return [r for r in rows if r["load"] == load and r["peer"] == peer and r["cores"] == c]
def col(load, peer, key, c):
    return [v for v in (f(r[key]) for r in sel(load, peer, c)) if v is not None]
def med(xs): return st.median(xs) if xs else None
def fmt(x, d=0):
    return "n/a" if x is None else (f"{x:,.{d}f}")
def rng(xs, d=0): return f"{fmt(min(xs), d)}–{fmt(max(xs), d)}" if xs else "n/a"
def spread(xs): return f"{100*(max(xs)-min(xs))/st.median(xs):.1f}%" if xs and st.median(xs) else "n/a"
def per_cpu(load, p, c, key="ok"):  # median over reps of key / proxy CPU s
    xs = [f(r[key]) / f(r["px_cpu_s"]) for r in sel(load, p, c) if f(r["px_cpu_s"]) and f(r[key]) is not None]
    return med(xs)
def added(load, p, c, key):  # median over reps of (peer - direct of the same rep)
    d = {r["rep"]: f(r[key]) for r in sel(load, "direct", c)}
    xs = [f(r[key]) - d[r["rep"]] for r in sel(load, p, c) if f(r[key]) is not None and d.get(r["rep"]) is not None]
    return med(xs)
scheme = "https" if tls else "http"
url = f"{scheme}://127.0.0.1:PORT/grpc.testing.TestService/"
ghz_tls = "--cacert ca.pem --cname localhost" if tls else "--insecure"
def title(load):
    if load in ("l1", "l2"):
        c, m = ("1", "100") if load == "l1" else ("32", "10")
        return f"{load} — `h2load -c {c} -m {m} -n {n} -d empty.grpc {url}EmptyCall`"
    if load.startswith("l3"):
        rate = ghz_rps if load == "l3" else load[3:]
        return f"{load} — `ghz {ghz_tls} --connections 1 -c {max(16, int(rate) // 250)} --rps {rate} -z {ghz_dur} --call grpc.testing.TestService.UnaryCall -D unary-1k.json`, 1 KiB each way"
    if load == "big-unary":
        return f"big-unary — `h2load -c 1 -m 4 -n {big_n} -d big-unary.grpc {url}UnaryCall`, 1 MiB request and 1 MiB response"
    if load == "big-stream":
        return f"big-stream — `h2load -c 1 -n 1 -d big-stream.grpc {url}StreamingOutputCall`, {stream_mib} × 1 MiB responses"
    if load == "hs":
        return f"hs — `h2load -c {hs_conns} -n {hs_conns} -d empty.grpc {url}EmptyCall` × {hs_rounds}: one call per new TLS connection (full handshakes)"
    return load
out = []
P = out.append
present = [l for l in loads if any(r["load"] == l for r in rows)]
for c in cores:
    for load in present:
        if not any(r["cores"] == c for r in rows if r["load"] == load): continue
        P(f"### {title(load)} — {c} proxy core{'s' if c != '1' else ''}{', TLS' if tls else ''} (median of {reps}; min–max)\n")
        if load in ("l1", "l2"):
            P("| peer | req/s | min–max | spread | × direct | mean ms | max ms | proxy CPU s | req per proxy-CPU-s | µs proxy CPU per req | cpu0 % | cpu1 % | backend CPU split | non-2xx/failed |")
            P("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
            base = med(col(load, "direct", "rps", c))
            for p in peers:
                rps = col(load, p, "rps", c)
                if not rps: continue
                pc = col(load, p, "px_cpu_s", c); per = per_cpu(load, p, c)
                splits = [r["be_split"] for r in sel(load, p, c)]
                P(f"| {p} | {fmt(med(rps))} | {rng(rps)} | {spread(rps)} | {fmt(med(rps)/base, 2) if base else 'n/a'} | "
                  f"{fmt(med(col(load,p,'mean_ms',c)),2)} | {fmt(med(col(load,p,'max_ms',c)),1)} | {fmt(med(pc),2) if pc else 'n/a'} | "
                  f"{fmt(per) if per else 'n/a'} | {fmt(1e6/per, 1) if per else 'n/a'} | {fmt(med(col(load,p,'cpu0_pct',c)))} | {fmt(med(col(load,p,'cpu1_pct',c)))} | {splits[-1]} | {int(sum(col(load,p,'bad',c)))} |")
        elif load.startswith("l3"):
            P("| peer | achieved rps | p50 ms | p99 ms | p99.9 ms | p50 added ms | p99 added ms | p99.9 added ms | p99.9 added min–max | µs proxy CPU per call | calls per proxy-CPU-s | proxy CPU % of core | errors |")
            P("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for p in peers:
                if not col(load, p, "p50_ms", c): continue
                pc = col(load, p, "px_cpu_s", c); w = col(load, p, "wall_s", c)
                cpu = med([100*x/y for x, y in zip(pc, w)]) if pc else None
                per = per_cpu(load, p, c)
                d = {r["rep"]: f(r["p999_ms"]) for r in sel(load, "direct", c)}
                a999 = [f(r["p999_ms"]) - d[r["rep"]] for r in sel(load, p, c) if f(r["p999_ms"]) is not None and d.get(r["rep"]) is not None]
                dir_ = p == "direct"
                P(f"| {p} | {fmt(med(col(load,p,'rps',c)))} | {fmt(med(col(load,p,'p50_ms',c)),3)} | {fmt(med(col(load,p,'p99_ms',c)),3)} | {fmt(med(col(load,p,'p999_ms',c)),3)} | "
                  f"{'—' if dir_ else fmt(added(load,p,c,'p50_ms'),3)} | {'—' if dir_ else fmt(added(load,p,c,'p99_ms'),3)} | {'—' if dir_ else fmt(added(load,p,c,'p999_ms'),3)} | {'—' if dir_ else rng(a999,3)} | "
                  f"{fmt(1e6/per, 1) if per else '—'} | {fmt(per) if per else '—'} | {fmt(cpu) if cpu is not None else '—'} | {int(sum(col(load,p,'bad',c)))} |")
        elif load.startswith("big"):
            P("| peer | MB/s | min–max | × direct | MB per proxy-CPU-s | proxy CPU s | calls | response bytes as sent | failed |")
            P("|---|---:|---:|---:|---:|---:|---:|---|---:|")
            def mbs(p): return [f(r["bytes"]) / 1e6 / f(r["wall_s"]) for r in sel(load, p, c) if f(r["bytes"]) is not None and f(r["wall_s"])]
            base = med(mbs("direct"))
            for p in peers:
                xs = mbs(p)
                if not xs: continue
                per = per_cpu(load, p, c, "bytes"); pc = col(load, p, "px_cpu_s", c)
                short = [r["errinfo"] for r in sel(load, p, c) if "data=" in r["errinfo"]]
                P(f"| {p} | {fmt(med(xs))} | {rng(xs)} | {fmt(med(xs)/base, 2) if base else 'n/a'} | {fmt(per/1e6) if per else '—'} | "
                  f"{fmt(med(pc),2) if pc else '—'} | {int(sum(col(load,p,'ok',c)))} | {'no: ' + short[-1].split('data=')[1] if short else 'yes'} | {int(sum(col(load,p,'bad',c)))} |")
        elif load == "hs":
            P("| peer | handshakes/s | min–max | handshakes per proxy-CPU-s | µs proxy CPU per handshake | proxy CPU s | failed |")
            P("|---|---:|---:|---:|---:|---:|---:|")
            for p in peers:
                rps = col(load, p, "rps", c)
                if not rps: continue
                per = per_cpu(load, p, c); pc = col(load, p, "px_cpu_s", c)
                P(f"| {p} | {fmt(med(rps))} | {rng(rps)} | {fmt(per) if per else '—'} | {fmt(1e6/per,1) if per else '—'} | {fmt(med(pc),2) if pc else '—'} | {int(sum(col(load,p,'bad',c)))} |")
        P("")
if len(cores) > 1:
    a, b = cores[0], cores[-1]
    P(f"### From {a} to {b} proxy cores (medians)\n")
    P(f"Calls per proxy-CPU-second that fall from {a} to {b} cores mean the second core costs more than it brings; throughput × says whether it scales.\n")
    P(f"| load | unit | peer | per s {a}c | per s {b}c | throughput × | per proxy-CPU-s {a}c | {b}c | per-CPU-s × |")
    P("|---|---|---|---:|---:|---:|---:|---:|---:|")
    def rate(load, p, c):  # calls (handshakes, MB for the big loads) per second
        if load.startswith("big"):
            return med([f(r["bytes"]) / 1e6 / f(r["wall_s"]) for r in sel(load, p, c) if f(r["bytes"]) is not None and f(r["wall_s"])])
        return med(col(load, p, "rps", c))
    for load in present:
        big = load.startswith("big")
        for p in peers:
            r1 = rate(load, p, a); r2 = rate(load, p, b)
            if r1 is None and r2 is None: continue
            e1 = per_cpu(load, p, a, "bytes" if big else "ok"); e2 = per_cpu(load, p, b, "bytes" if big else "ok")
            if big: e1, e2 = (e1 / 1e6 if e1 else None), (e2 / 1e6 if e2 else None)
            unit = "MB" if big else ("handshakes" if load == "hs" else "calls")
            P(f"| {load} | {unit} | {p} | {fmt(r1)} | {fmt(r2)} | {fmt(r2/r1,2) if r1 and r2 else 'n/a'} | {fmt(e1) if e1 else '—'} | {fmt(e2) if e2 else '—'} | {fmt(e2/e1,2) if e1 and e2 else '—'} |")
    P("")
for c in cores:
    P(f"### Memory (RSS of the proxy process tree, MiB) — {c} proxy core{'s' if c != '1' else ''}\n")
    P("| peer | idle after start (VmRSS) | after load 2 (VmRSS) | peak through load 2 (VmHWM) | upstream TCP conns after load 2 |")
    P("|---|---:|---:|---:|---:|")
    for p in peers:
        if p == "direct": continue
        i = mem.get((p, "idle", c)); a_ = mem.get((p, "after-l2", c)); u = mem.get((p, "upstream-conns-after-l2", c))
        P(f"| {p} | {fmt(i[0]/1024,1) if i else 'n/a'} | {fmt(a_[0]/1024,1) if a_ else 'n/a'} | {fmt(a_[1]/1024,1) if a_ else 'n/a'} | {u[0] if u else 'n/a'} |")
    P("")
hellos = os.path.join(run, "tls-hellos.txt")
if tls and os.path.exists(hellos):
    hs_ = [l.split() for l in open(hellos) if l.split()[1:2] in (["CH"], ["SH"])]
    wins = [l.rstrip("\n").split("\t") for l in open(os.path.join(run, "windows.tsv"))]
    P("### Upstream TLS handshakes (hellos seen on the backend ports, every repetition summed)\n")
    P("Counted by `tlsobserve.py` from the plaintext hellos: a ClientHello offers resumption with a pre_shared_key (or TLS 1.2 ticket), a ServerHello with pre_shared_key resumed. For direct these are the load generator's own handshakes.\n")
    P("| cores | peer | load | handshakes | offered resumption | resumed |")
    P("|---|---|---|---:|---:|---:|")
    for c in cores:
        for p in peers:
            for load in ["checks"] + present:
                w = [(float(x[4]), float(x[5])) for x in wins if x[0] == load and x[2] == p and x[3] == c]
                if not w: continue
                inw = lambda t: any(a <= t <= b for a, b in w)
                ch = [h for h in hs_ if h[1] == "CH" and inw(float(h[0]))]
                sh = [h for h in hs_ if h[1] == "SH" and inw(float(h[0]))]
                P(f"| {c} | {p} | {load} | {len(ch)} | {sum(h[4] == '1' for h in ch)} | {sum(h[4] == '1' for h in sh)} |")
    P("")
c = cores[0]
l3 = "l3" if "l3" in present else f"l3-{ghz_rps}"
P(f"### Summary (medians, {c} proxy core{'s' if c != '1' else ''})\n")
P(f"| peer | L1 req/s | L1 × direct | L2 req/s | L2 × direct | {l3} p50 ms | {l3} p99 ms | RSS idle MiB | RSS after L2 MiB |")
P("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
b1 = med(col("l1", "direct", "rps", c)); b2 = med(col("l2", "direct", "rps", c))
for p in peers:
    r1 = med(col("l1", p, "rps", c)); r2 = med(col("l2", p, "rps", c))
    i = mem.get((p, "idle", c)); a_ = mem.get((p, "after-l2", c))
    P(f"| {p} | {fmt(r1)} | {fmt(r1/b1,2) if r1 and b1 else 'n/a'} | {fmt(r2)} | {fmt(r2/b2,2) if r2 and b2 else 'n/a'} | "
      f"{fmt(med(col(l3,p,'p50_ms',c)),3)} | {fmt(med(col(l3,p,'p99_ms',c)),3)} | {fmt(i[0]/1024,1) if i else '—'} | {fmt(a_[0]/1024,1) if a_ else '—'} |")
print("\n".join(out))
EOF
{
  echo "# gRPC ($([ "$TLS" = 1 ] && echo "TLS, ALPN h2" || echo h2c)) proxy peers — run $(basename "$RUN")"
  echo
  cat "$RUN/machine.md"
  echo
  echo "## Correctness checks"
  echo
  echo '```'
  column -t -s $'\t' "$CHECKS"
  echo '```'
  echo
  echo "## Results"
  echo
  cat "$RUN/tables.md"
  echo
  echo "## Raw runs (results.tsv)"
  echo
  echo '```'
  column -t -s $'\t' "$TSV"
  echo '```'
} >"$RUN/report.md"
[ -n "${RESULTS_MD:-}" ] && cp "$RUN/report.md" "$RESULTS_MD"
cat "$RUN/tables.md"
echo
column -t -s $'\t' "$CHECKS"
log "report: $RUN/report.md"
