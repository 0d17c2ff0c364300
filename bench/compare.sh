#!/usr/bin/env bash
# compare.sh — side-by-side gRPC (h2c) forwarding benchmark of existing
# proxies, one proxy core each, on a 2-core box.
#
# Layout (everything on 127.0.0.1):
#   backends  4 x grpc-go interop server (grpc.testing.TestService),
#             ports 50051-50054, pinned to core $LG_CPU with the load generator
#   peers     direct   client -> backend 50051 (no proxy; the physical limit)
#             nginx    :18081  peers/nginx.conf   (grpc_pass, upstream keepalive)
#             haproxy  :18082  peers/haproxy.cfg  (mode http, proto h2 both sides)
#             caddy    :18083  peers/Caddyfile    (reverse_proxy, versions h2c 2)
#             <extra>  :18091+ any PEER_<NAME>='start command' from the environment
#             every proxy is pinned to core $PX_CPU and runs one worker/thread
#             (GOMAXPROCS=1 for Go peers)
#   loads     l1  h2load -c 1  -m 100 -n $N   EmptyCall (raw gRPC frame)
#             l2  h2load -c 32 -m 10  -n $N   EmptyCall
#             l3  ghz --connections 1 -c 16 --rps $GHZ_RPS -z $GHZ_DUR
#                 UnaryCall, 1 KiB request payload + 1 KiB response
#   order     per load: rep 1 (A B C D ...), rep 2 (A B C D ...), ...
#
# Adding a peer (run.sh adds Sightline this way):
#   PEER_SIGHTLINE='/path/to/sightline --config {RUNDIR}/sightline.yaml' \
#     ./compare.sh
# Placeholders substituted in the command before it starts:
#   {PORT}      the listen port assigned to the peer (18091, 18092, ...)
#   {BACKENDS}  127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053,127.0.0.1:50054
#   {RUNDIR}    a scratch dir for the peer ($RUN/<name>)
# The command is started as `GOMAXPROCS=1 taskset -c $PX_CPU bash -c "exec CMD"`,
# so the PID we measure is the proxy itself (children are summed in RSS/CPU).
# The peer must serve prior-knowledge h2c on 127.0.0.1:{PORT} and forward
# /grpc.testing.TestService/* round-robin per request to the four backends.
#
# Knobs (env): PEERS="direct nginx haproxy caddy"  REPS=3  N=200000
#   LOADS="l1 l2 l3"  GHZ_RPS=2000  GHZ_DUR=10s  LG_CPU=0  PX_CPU=1
#   SCRATCH=/tmp/bench  RESULTS_MD=<path>  (default: $RUN/report.md only)
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
LOADS=${LOADS:-"l1 l2 l3"}
GHZ_RPS=${GHZ_RPS:-2000}
GHZ_DUR=${GHZ_DUR:-10s}
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

mkdir -p "$RUN/raw"
TSV=$RUN/results.tsv
CHECKS=$RUN/checks.tsv
MEM=$RUN/mem.tsv
LOG=$RUN/run.log
: >"$CHECKS"; : >"$MEM"
printf 'load\trep\tpeer\trps\tmean_ms\tmax_ms\tp50_ms\tp90_ms\tp99_ms\tok\tbad\terrinfo\twall_s\tpx_cpu_s\tcpu0_pct\tcpu1_pct\tbe_split\trss_kb\thwm_kb\n' >"$TSV"

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
for t in "$SERVER" "$CADDY" "$GHZ"; do [ -x "$t" ] || { echo "missing $t" >&2; exit 1; }; done
for t in "$H2LOAD" "$NGHTTP" nginx haproxy taskset ss "$PY"; do command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }; done

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
  echo "- pinning: load generator + backends on cpu$LG_CPU, proxy on cpu$PX_CPU"
  echo "- params: REPS=$REPS N=$N LOADS=\"$LOADS\" GHZ_RPS=$GHZ_RPS GHZ_DUR=$GHZ_DUR"
} >"$RUN/machine.md"
cat "$RUN/machine.md" >&2

# ---------------------------------------------------------------- start
log "run dir: $RUN"
for p in "${BACKEND_PORTS[@]}"; do
  GOMAXPROCS=1 taskset -c "$LG_CPU" "$SERVER" --port "$p" --use_tls=false >"$RUN/raw/backend-$p.log" 2>&1 &
  BACKEND_PIDS+=($!); STARTED+=($!)
done
for p in "${BACKEND_PORTS[@]}"; do wait_listen "$p" || { log "backend $p did not start"; exit 1; }; done
log "backends up: ${BACKEND_PIDS[*]}"

start_peer() {
  local name=$1
  case $name in
    direct)
      KIND[$name]=direct; PORT[$name]=${BACKEND_PORTS[0]}; PID[$name]=${BACKEND_PIDS[0]}; return 0 ;;
    nginx)
      KIND[$name]=builtin; PORT[$name]=18081
      mkdir -p "$RUN/nginx/tmp"
      taskset -c "$PX_CPU" nginx -p "$RUN/nginx/" -c "$PEERS_DIR/nginx.conf" -g "pid $RUN/nginx/nginx.pid;" >"$RUN/raw/nginx.log" 2>&1 &
      ;;
    haproxy)
      KIND[$name]=builtin; PORT[$name]=18082
      taskset -c "$PX_CPU" haproxy -db -f "$PEERS_DIR/haproxy.cfg" >"$RUN/raw/haproxy.log" 2>&1 &
      ;;
    caddy)
      KIND[$name]=builtin; PORT[$name]=18083
      mkdir -p "$RUN/caddy"
      GOMAXPROCS=1 XDG_DATA_HOME=$RUN/caddy XDG_CONFIG_HOME=$RUN/caddy \
        taskset -c "$PX_CPU" "$CADDY" run --config "$PEERS_DIR/Caddyfile" --adapter caddyfile >"$RUN/raw/caddy.log" 2>&1 &
      ;;
    *)
      [ "${KIND[$name]:-}" = extra ] || { log "unknown peer $name"; return 1; }
      GOMAXPROCS=1 taskset -c "$PX_CPU" bash -c "exec ${CMD[$name]}" >"$RUN/raw/$name.log" 2>&1 &
      ;;
  esac
  PID[$name]=$!; STARTED+=($!)
  if ! wait_listen "${PORT[$name]}"; then
    log "peer $name did not listen on ${PORT[$name]}; see $RUN/raw/$name.log"; return 1
  fi
}

ACTIVE=""
for name in $PEERS; do
  if start_peer "$name"; then ACTIVE="$ACTIVE $name"; log "started $name pid=${PID[$name]} port=${PORT[$name]}"
  else printf '%s\tstart\tFAIL\tdid not listen\n' "$name" >>"$CHECKS"; fi
done
sleep 1
for name in $ACTIVE; do   # idle RSS: after start, before any request
  [ "${KIND[$name]}" = direct ] && continue
  read -r r h < <(tree_mem "${PID[$name]}"); printf '%s\tidle\t%s\t%s\n' "$name" "$r" "$h" >>"$MEM"
done

# ---------------------------------------------------------------- correctness
ghz_summary() {  # ghz json -> "rps p50 p90 p99 avg max okcount badcount errinfo"
  "$PY" - "$1" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("NA NA NA NA NA NA 0 0 unparsable"); sys.exit()
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
print(f"{d.get('rps', 0):.1f} {g(50)} {g(90)} {g(99)} {d.get('average', 0)/1e6:.3f} {d.get('slowest', 0)/1e6:.3f} {ok} {bad} {info}")
EOF
}
run_ghz() {  # port call datafile-or-json outfile extra-args...
  local port=$1 call=$2 data=$3 out=$4; shift 4
  local dflag=(-d "$data"); [ -f "$data" ] && dflag=(-D "$data")
  taskset -c "$LG_CPU" "$GHZ" --cpus 1 --insecure --import-paths "$PROTO_DIR" --proto "$PROTO" \
    --call "grpc.testing.TestService.$call" "${dflag[@]}" -O json "$@" "127.0.0.1:$port" >"$out.full" 2>"$out.err"
  # keep the summary, drop the per-request details
  jq 'del(.details)' "$out.full" >"$out" 2>/dev/null || cp "$out.full" "$out"; rm -f "$out.full"
}
check_peer() {
  local name=$1 port=${PORT[$1]} f res verdict spec call mode data args want
  # 1. raw h2 exchanges (nghttp -v): status 200, a DATA frame, then grpc-status 0 in a
  #    trailing HEADERS frame; with the interop echo headers, the initial one must come
  #    back before DATA and the -bin trailer after it (i.e. in the trailers)
  local hdrs
  for spec in "EmptyCall|plain" "UnaryCall|echo-metadata"; do
    IFS='|' read -r call mode <<<"$spec"
    f=$RUN/raw/check-$name-nghttp-$call.txt
    hdrs=(-H 'content-type: application/grpc' -H 'te: trailers')
    [ "$mode" = echo-metadata ] && hdrs+=(-H 'x-grpc-test-echo-initial: hello' -H 'x-grpc-test-echo-trailing-bin: AQID')
    "$NGHTTP" -nv -d "$EMPTY_FRAME" "${hdrs[@]}" "http://127.0.0.1:$port/grpc.testing.TestService/$call" >"$f" 2>&1
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
    printf '%s\tnghttp %s %s\t%s\t%s\n' "$name" "$call" "$( [ "$mode" = plain ] && echo trailers || echo 'echo metadata+trailer')" "$verdict" "$(grep -c 'recv (stream_id=' "$f") header fields received" >>"$CHECKS"
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
    f=$RUN/raw/check-$name-$call-$(echo "$data$want" | md5sum | cut -c1-6).json
    # shellcheck disable=SC2086
    run_ghz "$port" "$call" "$data" "$f" $args
    res=$(jq -r --arg w "$want" '.statusCodeDistribution as $s | ($s|add) as $t | if ($s[$w] // 0) == $t and $t > 0 then "ok" else "FAIL:" + ($s|tostring) + " " + ((.errorDistribution // {})|tostring) end' "$f" 2>/dev/null || echo "FAIL:no-output $(head -c 200 "$f.err")")
    local label=$call; case $call:$data in *262144*) label="$call 256KiB-resp";; *response_status*) label="$call error-status(NotFound, trailers-only)";; *unary-1k*) label="$call 1KiB";; Streaming*) label="$call server-stream 5x1KiB";; FullDuplex*) label="$call bidi 3x1KiB";; esac
    printf '%s\tghz %s\t%s\t%s\n' "$name" "$label" "$res" "$(jq -c '.statusCodeDistribution' "$f" 2>/dev/null)" >>"$CHECKS"
  done
}
for name in $ACTIVE; do log "checking $name"; check_peer "$name"; done
column -t -s $'\t' "$CHECKS" >&2

# ---------------------------------------------------------------- loads
measure() {  # load rep peer -> one TSV row
  local load=$1 rep=$2 name=$3 port=${PORT[$3]} pid=${PID[$3]}
  local out=$RUN/raw/$load-$name-$rep
  local c0 c1 p0 p1 b0 b1 t0 t1 pxcpu r h row
  c0=$(cpustat); b0=$(be_ticks); p0=$( [ "${KIND[$name]}" = direct ] && echo 0 || tree_ticks "$pid"); t0=$(date +%s.%N)
  case $load in
    l1|l2)
      local c m; if [ "$load" = l1 ]; then c=1 m=100; else c=32 m=10; fi
      taskset -c "$LG_CPU" "$H2LOAD" -c $c -m $m -n "$N" -d "$EMPTY_FRAME" \
        -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$port$GRPC_PATH" >"$out.txt" 2>&1
      row=$(awk '
        function ms(v){ if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
        /^finished in/{ rps=$4 }
        /^requests:/{ total=$2; succ=$8; fail=$10; err=$12; to=$14 }
        /^status codes:/{ s2=$3; s3=$5; s4=$7; s5=$9 }
        /^time for request:/{ mn=ms($4); mx=ms($5); mean=ms($6) }
        END{ bad=total-s2; info="2xx=" s2 ",failed=" fail ",errored=" err ",timeout=" to ",4xx=" s4 ",5xx=" s5
             printf "%s\t%.3f\t%.3f\tNA\tNA\tNA\t%s\t%s\t%s", rps, mean, mx, s2+0, bad+0, info }' "$out.txt")
      ;;
    l3)
      run_ghz "$port" UnaryCall "$UNARY_1K" "$out.json" --connections 1 -c 16 --rps "$GHZ_RPS" -z "$GHZ_DUR" --duration-stop=wait
      read -r rps p50 p90 p99 avg mx ok bad info < <(ghz_summary "$out.json")
      row=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$rps" "$avg" "$mx" "$p50" "$p90" "$p99" "$ok" "$bad" "$info")
      ;;
  esac
  t1=$(date +%s.%N); c1=$(cpustat); b1=$(be_ticks)
  p1=$( [ "${KIND[$name]}" = direct ] && echo 0 || tree_ticks "$pid")
  pxcpu=$( [ "${KIND[$name]}" = direct ] && echo NA || awk -v d=$((p1-p0)) -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", d/hz}')
  if [ "${KIND[$name]}" = direct ]; then r=NA; h=NA; else read -r r h < <(tree_mem "$pid"); fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$load" "$rep" "$name" "$row" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')" "$pxcpu" \
    "$(busy_pct "$c0" "$c1" "cpu$LG_CPU")" "$(busy_pct "$c0" "$c1" "cpu$PX_CPU")" "$(be_split "$b0" "$b1")" "$r" "$h" >>"$TSV"
  tail -1 "$TSV" | awk -F'\t' '{printf "  %-3s rep%s %-9s rps=%-9s mean/p50=%s/%s ms max=%s ms ok=%s bad=%s px_cpu=%ss cpu0=%s%% cpu1=%s%% split=%s\n",$1,$2,$3,$4,$5,$7,$6,$10,$11,$14,$15,$16,$17}' | tee -a "$LOG" >&2
}
warmup() {  # load peer
  local port=${PORT[$2]}
  case $1 in
    l1) taskset -c "$LG_CPU" "$H2LOAD" -c 1 -m 100 -n "$WARM_N" -d "$EMPTY_FRAME" -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$port$GRPC_PATH" >/dev/null 2>&1 ;;
    l2) taskset -c "$LG_CPU" "$H2LOAD" -c 32 -m 10 -n "$WARM_N" -d "$EMPTY_FRAME" -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$port$GRPC_PATH" >/dev/null 2>&1 ;;
    l3) run_ghz "$port" UnaryCall "$UNARY_1K" "$RUN/raw/warm-l3-$2.json" --connections 1 -c 16 -n 2000 ;;
  esac
}

for load in $LOADS; do
  log "load $load: warm-up"
  for name in $ACTIVE; do warmup "$load" "$name"; done
  for rep in $(seq 1 "$REPS"); do
    log "load $load rep $rep"
    for name in $ACTIVE; do sleep 0.5; measure "$load" "$rep" "$name"; done
  done
  if [ "$load" = l2 ]; then
    for name in $ACTIVE; do
      [ "${KIND[$name]}" = direct ] && continue
      read -r r h < <(tree_mem "${PID[$name]}"); printf '%s\tafter-l2\t%s\t%s\n' "$name" "$r" "$h" >>"$MEM"
      printf '%s\tupstream-conns-after-l2\t%s\t0\n' "$name" "$(upstream_conns "${PID[$name]}")" >>"$MEM"
    done
  fi
done
for name in $ACTIVE; do   # still alive at the end?
  [ "${KIND[$name]}" = direct ] && continue
  kill -0 "${PID[$name]}" 2>/dev/null || printf '%s\tend\tFAIL\tprocess died (see raw/%s.log)\n' "$name" "$name" >>"$CHECKS"
done

# ---------------------------------------------------------------- report
cleanup; trap - EXIT
"$PY" - "$RUN" "$REPS" "$N" "$GHZ_RPS" "$GHZ_DUR" >"$RUN/tables.md" <<'EOF'
import csv, statistics as st, sys, os
run, reps, n, ghz_rps, ghz_dur = sys.argv[1:6]
rows = list(csv.DictReader(open(os.path.join(run, "results.tsv")), delimiter="\t"))
mem = {}
for line in open(os.path.join(run, "mem.tsv")):
    p, when, r, h = line.rstrip("\n").split("\t")
    mem[(p, when)] = (int(r), int(h))
peers = []
for r in rows:
    if r["peer"] not in peers: peers.append(r["peer"])
def f(x):
    try: return float(x)
    except: return None
def col(load, peer, key):
    return [v for v in (f(r[key]) for r in rows if r["load"] == load and r["peer"] == peer) if v is not None]
def med(xs): return st.median(xs) if xs else None
def fmt(x, d=0):
    return "n/a" if x is None else (f"{x:,.{d}f}")
def rng(xs, d=0): return f"{fmt(min(xs), d)}–{fmt(max(xs), d)}" if xs else "n/a"
def spread(xs): return f"{100*(max(xs)-min(xs))/st.median(xs):.1f}%" if xs and st.median(xs) else "n/a"
out = []
P = out.append
loads = [l for l in ("l1", "l2", "l3") if any(r["load"] == l for r in rows)]
titles = {"l1": f"Load 1 — h2load -c 1 -m 100 -n {n}, EmptyCall",
          "l2": f"Load 2 — h2load -c 32 -m 10 -n {n}, EmptyCall",
          "l3": f"Load 3 — ghz --connections 1 -c 16 --rps {ghz_rps} -z {ghz_dur}, UnaryCall 1 KiB"}
for load in loads:
    P(f"### {titles[load]} (median of {reps}; min–max)\n")
    if load in ("l1", "l2"):
        P("| peer | req/s | min–max | spread | × direct | mean ms | max ms | proxy CPU s | req per proxy-CPU-s | cpu0 % | cpu1 % | backend CPU split | non-2xx/failed |")
        P("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
        base = med(col(load, "direct", "rps"))
        for p in peers:
            rps = col(load, p, "rps")
            if not rps: continue
            pc = col(load, p, "px_cpu_s"); ok = col(load, p, "ok")
            per = med([o / c for o, c in zip(ok, pc) if c]) if pc else None
            splits = [r["be_split"] for r in rows if r["load"] == load and r["peer"] == p]
            bad = sum(col(load, p, "bad"))
            P(f"| {p} | {fmt(med(rps))} | {rng(rps)} | {spread(rps)} | {fmt(med(rps)/base, 2) if base else 'n/a'} | "
              f"{fmt(med(col(load,p,'mean_ms')),2)} | {fmt(med(col(load,p,'max_ms')),1)} | {fmt(med(pc),2) if pc else 'n/a'} | "
              f"{fmt(per) if per else 'n/a'} | {fmt(med(col(load,p,'cpu0_pct')))} | {fmt(med(col(load,p,'cpu1_pct')))} | {splits[-1]} | {int(bad)} |")
    else:
        P("| peer | achieved rps | p50 ms | p50 min–max | p90 ms | p99 ms | p99 min–max | p50 × direct | p99 × direct | mean ms | max ms | proxy CPU % of core | errors |")
        P("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        b50 = med(col(load, "direct", "p50_ms")); b99 = med(col(load, "direct", "p99_ms"))
        for p in peers:
            p50 = col(load, p, "p50_ms")
            if not p50: continue
            p99 = col(load, p, "p99_ms"); pc = col(load, p, "px_cpu_s"); w = col(load, p, "wall_s")
            cpu = med([100*c/x for c, x in zip(pc, w)]) if pc else None
            P(f"| {p} | {fmt(med(col(load,p,'rps')))} | {fmt(med(p50),3)} | {rng(p50,3)} | {fmt(med(col(load,p,'p90_ms')),3)} | "
              f"{fmt(med(p99),3)} | {rng(p99,3)} | {fmt(med(p50)/b50,2) if b50 else 'n/a'} | {fmt(med(p99)/b99,2) if b99 else 'n/a'} | "
              f"{fmt(med(col(load,p,'mean_ms')),3)} | {fmt(med(col(load,p,'max_ms')),1)} | {fmt(cpu)} | {int(sum(col(load,p,'bad')))} |")
    P("")
P("### Memory (RSS of the proxy process tree, MiB)\n")
P("| peer | idle after start (VmRSS) | after load 2 (VmRSS) | peak through load 2 (VmHWM) | upstream TCP conns after load 2 |")
P("|---|---:|---:|---:|---:|")
for p in peers:
    if p == "direct": continue
    i = mem.get((p, "idle")); a = mem.get((p, "after-l2"))
    c = mem.get((p, "upstream-conns-after-l2"))
    P(f"| {p} | {fmt(i[0]/1024,1) if i else 'n/a'} | {fmt(a[0]/1024,1) if a else 'n/a'} | {fmt(a[1]/1024,1) if a else 'n/a'} | {c[0] if c else 'n/a'} |")
P("")
P("### Summary (medians)\n")
P("| peer | L1 req/s | L1 × direct | L2 req/s | L2 × direct | L3 p50 ms | L3 p99 ms | RSS idle MiB | RSS after L2 MiB |")
P("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
b1 = med(col("l1", "direct", "rps")); b2 = med(col("l2", "direct", "rps"))
for p in peers:
    r1 = med(col("l1", p, "rps")); r2 = med(col("l2", p, "rps"))
    i = mem.get((p, "idle")); a = mem.get((p, "after-l2"))
    P(f"| {p} | {fmt(r1)} | {fmt(r1/b1,2) if r1 and b1 else 'n/a'} | {fmt(r2)} | {fmt(r2/b2,2) if r2 and b2 else 'n/a'} | "
      f"{fmt(med(col('l3',p,'p50_ms')),3)} | {fmt(med(col('l3',p,'p99_ms')),3)} | {fmt(i[0]/1024,1) if i else '—'} | {fmt(a[0]/1024,1) if a else '—'} |")
print("\n".join(out))
EOF
{
  echo "# gRPC (h2c) proxy peers — run $(basename "$RUN")"
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
