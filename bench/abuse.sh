#!/usr/bin/env bash
# abuse.sh — the HTTP/2 abuse benchmark: each attack of bench/abuse against
# Sightline and against HAProxy 2.6, one proxy at a time, in front of the
# same Go gRPC backend (h2c, everything on 127.0.0.1).
#
#   bench/abuse.sh                      # every attack, both proxies: about 20 minutes
#   bench/abuse.sh -o abuse.md          # also write the report to abuse.md
#   ATTACKS="zero-window flood-ping" PROXIES=sightline ATTACK_SECS=10 bench/abuse.sh
#
# For each attack and proxy it starts a fresh backend (`abuse backend`) and a
# fresh proxy, measures a victim (`abuse victim`: one grpc-go connection,
# VICTIM_RATE EmptyCalls a second, 1 s deadline) for IDLE_SECS, then runs the
# attack (`abuse attack`) and the victim together for ATTACK_SECS. The attack
# samples the proxy's /proc/PID/status (VmRSS every 100 ms, VmHWM) and
# /proc/PID/stat (utime+stime) and records what the attacker saw: GOAWAY
# frames and their codes, closed connections, reset streams. It stops early
# if the proxy's RSS passes CAP_MB, so a runaway proxy cannot take the
# machine's memory.
#
# Pinning: the proxy on core PX_CPU (Sightline with GOMAXPROCS=1, HAProxy
# with nbthread 1), with the backend and the victim (SV_CPU); the attacker
# alone on core LG_CPU. The attacker is the outsider: what delays the
# victim is then the proxy's work (and the kernel's for its sockets), never
# the attacker's own. With the attacker beside the victim and the backend
# (SV_CPU=0, the layout before 2026-12-07), idle-conns measured mostly the
# attacker: in connect() and write() it held that core 1 to 5 ms at a
# time, in the kernel, where this kernel (PREEMPT_NONE) does not preempt
# it, while the victim and the backend waited for the core and the
# proxy's sat idle (bench/README.md, Abuse, the run of 2026-12-07 01:53Z).
#
# Knobs (env): ATTACKS (default: all, `abuse list` names them)
#   PROXIES="sightline haproxy"  ATTACK_SECS=20  IDLE_SECS=ATTACK_SECS  VICTIM_RATE=100
#   (The idle baseline runs as long as the attack, so that the two p99s are
#   read the same way: over 2,000 calls each, the 20th slowest. Until
#   2026-12-07 it ran 5 s: its p99 was the 5th slowest of 500 calls, and
#   swung from 0.38 to 0.68 ms between rows of one run, which alone moved
#   a row's ratio by almost 2x.)
#   (PROXIES may name "direct": no proxy, the victim and the attacker call
#   the backend itself, for the attacks on the downstream side. It shows
#   what the attack costs the backend and its victim with nothing between;
#   its RSS and CPU columns are the backend's. And "floor", for idle-conns
#   only: `abuse floor` in the proxy's place, a Go server that does the
#   least any Go server must for a client that connects and asks nothing,
#   a goroutine each on Go's poller; it proxies nothing, so its victim
#   fails every call: read its CPU, the floor a proxy built on net and
#   goroutines starts from; "floor-loop" is `abuse floor -loop`, the same
#   from one goroutine on an epoll set of its own.)
#   VICTIM_RATE=0 runs no victim: the CPU column is then the attack's
#   alone (ATTACKS=idle-conns ATTACK_SECS=7: the storm and the hold, before
#   the 10 s header timeout).
#   CAP_MB=4096  IDLE_CONNS=19000  LG_CPU=0  PX_CPU=1  SV_CPU=PX_CPU
#   SIGHTLINE_REF=<commit> builds Sightline from that commit (git archive)
#   instead of the working tree; SIGHTLINE_BIN=<binary> uses a prebuilt one
#   KEEP=1 keeps the scratch directory (raw JSON and logs) after the run,
#   with each attack's victim trace (NAME.PROXY.victim.trace: every call's
#   start in seconds from the attack's start, and its latency in ms).
#
# Only processes this script started are stopped, by PID.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

out_md=
while [ $# -gt 0 ]; do
  case $1 in
    -o) out_md=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "abuse.sh: unknown argument $1 (only -o FILE)" >&2; exit 2 ;;
  esac
done

PROXIES=${PROXIES:-"sightline haproxy"}
ATTACK_SECS=${ATTACK_SECS:-20}
IDLE_SECS=${IDLE_SECS:-$ATTACK_SECS}
VICTIM_RATE=${VICTIM_RATE:-100}
CAP_MB=${CAP_MB:-4096}
IDLE_CONNS=${IDLE_CONNS:-19000}
LG_CPU=${LG_CPU:-0}
PX_CPU=${PX_CPU:-1}
SV_CPU=${SV_CPU:-$PX_CPU}
KEEP=${KEEP:-0}

PROXY_PORT=18100
BACKEND_PORT=50061
EVIL_WINDOW_PORT=50071
EVIL_RST_PORT=50072

log() { echo "[$(date +%T)] $*" >&2; }
die() { log "abuse.sh: $*"; exit 1; }
listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
wait_listen() { local i; for i in $(seq 1 100); do listening "$1" && return 0; sleep 0.1; done; return 1; }

STARTED=()
stop_pid() {  # TERM, then KILL after 2 s; only PIDs this script started
  local p=$1 i
  kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }
  kill -TERM "$p" 2>/dev/null
  for i in $(seq 1 20); do kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null
}
stop_all() {
  local i
  for (( i=${#STARTED[@]}-1; i>=0; i-- )); do stop_pid "${STARTED[i]}"; done
  STARTED=()
}
work=$(mktemp -d "${TMPDIR:-/tmp}/abuse.XXXXXX")
cleanup() {
  stop_all
  if [ "$KEEP" = 1 ]; then log "raw results kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- preflight
for t in haproxy taskset ss go; do command -v "$t" >/dev/null || die "missing $t (bench/setup.sh installs it)"; done
for p in $PROXY_PORT $BACKEND_PORT $EVIL_WINDOW_PORT $EVIL_RST_PORT; do
  listening "$p" && die "port $p is already in use"
done
# Each idle connection is a descriptor in the attacker and in the proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fds=$(ulimit -n)
if [ "$fds" != unlimited ] && [ "$IDLE_CONNS" -gt $(( fds - 500 )) ]; then
  log "ulimit -n is $fds: idle-conns opens $(( fds - 500 )) connections, not $IDLE_CONNS"
  IDLE_CONNS=$(( fds - 500 ))
fi

# go_build DIR OUT PKG: one retry, for a build cache shared with other builds
go_build() { (cd "$1" && go build -trimpath -o "$2" "$3") || { sleep 2; (cd "$1" && go build -trimpath -o "$2" "$3"); }; }
log "building into $work"
go_build "$repo" "$work/abuse" ./bench/abuse || die "building bench/abuse failed"
if [ -n "${SIGHTLINE_BIN:-}" ]; then
  sightline=$SIGHTLINE_BIN
  sightline_src="binary $SIGHTLINE_BIN"
elif [ -n "${SIGHTLINE_REF:-}" ]; then
  rev=$(git -C "$repo" rev-parse --short "$SIGHTLINE_REF") || die "no commit $SIGHTLINE_REF"
  mkdir -p "$work/src"
  git -C "$repo" archive "$rev" | tar -x -C "$work/src" || die "extracting $rev failed"
  sightline=$work/sightline
  go_build "$work/src" "$sightline" ./cmd/sightline || die "building cmd/sightline at $rev failed"
  sightline_src="commit $rev"
else
  sightline=$work/sightline
  go_build "$repo" "$sightline" ./cmd/sightline ||
    die "building cmd/sightline from the working tree failed (SIGHTLINE_REF=HEAD builds the last commit instead)"
  sightline_src="the working tree at $(git -C "$repo" rev-parse --short HEAD)"
  [ -n "$(git -C "$repo" status --porcelain 2>/dev/null)" ] && sightline_src="$sightline_src with uncommitted changes"
fi
abuse=$work/abuse

if [ -z "${ATTACKS:-}" ] || [ "${ATTACKS:-}" = all ]; then
  ATTACKS=$("$abuse" list | awk '{print $1}' | paste -sd' ')
fi
for a in $ATTACKS; do "$abuse" list | awk '{print $1}' | grep -qx "$a" || die "unknown attack $a"; done

# ---------------------------------------------------------------- configs
# The same routes and the same limits on both: gRPC to the backend, the two
# malicious upstreams on their own routes. Timeouts match Sightline's
# defaults (connect 1 s, request headers 10 s, idle 5 min); everything
# else is each proxy's default. HAProxy's maxconn is raised so that it, like
# Sightline, does not cap connections below the descriptor limit.
cat >"$work/sightline.yaml" <<EOF
admin: {address: 127.0.0.1:0}
listeners:
  - name: abuse
    address: 127.0.0.1:$PROXY_PORT
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /evil.Window/}
            cluster: evil_window
          - match: {prefix: /evil.RST/}
            cluster: evil_rst
          - match: {prefix: /}
            cluster: backend
clusters:
  - name: backend
    endpoints: [{address: 127.0.0.1:$BACKEND_PORT}]
  - name: evil_window
    endpoints: [{address: 127.0.0.1:$EVIL_WINDOW_PORT}]
  - name: evil_rst
    endpoints: [{address: 127.0.0.1:$EVIL_RST_PORT}]
EOF
cat >"$work/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $(( fds - 500 ))
    no strict-limits

defaults
    mode http
    timeout connect 1s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    timeout http-request 10s

frontend fe_abuse
    bind 127.0.0.1:$PROXY_PORT proto h2
    use_backend be_evil_window if { path_beg /evil.Window/ }
    use_backend be_evil_rst if { path_beg /evil.RST/ }
    default_backend be_grpc

backend be_grpc
    http-reuse always
    server b1 127.0.0.1:$BACKEND_PORT proto h2

backend be_evil_window
    http-reuse always
    server e1 127.0.0.1:$EVIL_WINDOW_PORT proto h2

backend be_evil_rst
    http-reuse always
    server e1 127.0.0.1:$EVIL_RST_PORT proto h2
EOF

start_proxy() {  # name logfile -> sets PX_PID
  case $1 in
    sightline)
      GOMAXPROCS=1 taskset -c "$PX_CPU" "$sightline" -c "$work/sightline.yaml" --log-level warn >"$2" 2>&1 & ;;
    haproxy)
      taskset -c "$PX_CPU" haproxy -db -f "$work/haproxy.cfg" >"$2" 2>&1 & ;;
    direct) PX_PID=$be_pid; TARGET_PORT=$BACKEND_PORT; return 0 ;;
    floor)
      GOMAXPROCS=1 taskset -c "$PX_CPU" "$abuse" floor -addr "127.0.0.1:$PROXY_PORT" >"$2" 2>&1 & ;;
    floor-loop)
      GOMAXPROCS=1 taskset -c "$PX_CPU" "$abuse" floor -loop -addr "127.0.0.1:$PROXY_PORT" >"$2" 2>&1 & ;;
    *) die "unknown proxy $1" ;;
  esac
  PX_PID=$!; STARTED+=("$PX_PID"); TARGET_PORT=$PROXY_PORT
  wait_listen "$PROXY_PORT"
}

# ---------------------------------------------------------------- runs
started_at=$(date -u +%FT%TZ)
log "attacks: $ATTACKS"
log "proxies: $PROXIES; ${ATTACK_SECS}s per attack after ${IDLE_SECS}s idle; victim $VICTIM_RATE calls/s"
for a in $ATTACKS; do
  evil=127.0.0.1:$EVIL_WINDOW_PORT
  [ "$a" = upstream-rst ] && evil=127.0.0.1:$EVIL_RST_PORT
  for px in $PROXIES; do
    case $a/$px in
      upstream-*/direct) continue ;; # nothing between to attack from behind
      idle-conns/floor | idle-conns/floor-loop) ;;
      */floor | */floor-loop) continue ;; # floors for idle-conns only
    esac
    base=$work/$a.$px
    GOMAXPROCS=1 taskset -c "$SV_CPU" "$abuse" backend -addr "127.0.0.1:$BACKEND_PORT" >"$base.backend.log" 2>&1 &
    be_pid=$!; STARTED+=("$be_pid")
    if ! wait_listen "$BACKEND_PORT"; then log "$a/$px: backend did not start"; stop_all; continue; fi
    if ! start_proxy "$px" "$base.proxy.log"; then
      log "$a/$px: proxy did not listen on $PROXY_PORT; see below"; tail -n 5 "$base.proxy.log" >&2; stop_all; continue
    fi
    if [ "$VICTIM_RATE" != 0 ]; then
      taskset -c "$SV_CPU" "$abuse" victim -addr "127.0.0.1:$TARGET_PORT" -rate "$VICTIM_RATE" -d "${IDLE_SECS}s" \
        -label "$a/$px idle" -out "$base.idle.json" 2>>"$base.victim.log"
    fi
    # The attacker runs at a lower priority than the victim and the backend,
    # for a layout that puts them on one core (SV_CPU=LG_CPU).
    taskset -c "$LG_CPU" nice -n 10 timeout -k 5 $(( ATTACK_SECS + 60 )) "$abuse" attack -name "$a" -proxy "$px" \
      -addr "127.0.0.1:$TARGET_PORT" -evil-addr "$evil" -pid "$PX_PID" -backend-pid "$be_pid" -d "${ATTACK_SECS}s" \
      -cap-mb "$CAP_MB" -idle-conns "$IDLE_CONNS" -out "$base.attack.json" 2>"$base.attack.log" &
    attacker=$!; STARTED+=("$attacker")
    if [ "$VICTIM_RATE" != 0 ]; then
      taskset -c "$SV_CPU" "$abuse" victim -addr "127.0.0.1:$TARGET_PORT" -rate "$VICTIM_RATE" -d "${ATTACK_SECS}s" \
        -label "$a/$px attack" -out "$base.victim.json" -trace "$base.victim.trace" 2>>"$base.victim.log"
    fi
    wait "$attacker" || log "$a/$px: the attack exited with $?; see $base.attack.log"
    stop_all
    if [ -s "$base.attack.json" ]; then
      log "$a/$px: $("$abuse" report -dir "$work" -proxies "$px" -attacks "$a" | sed -n 3p | cut -c1-300)"
    fi
  done
done

# ---------------------------------------------------------------- report
report=$work/report.md
{
  echo "Run of $started_at on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'))," \
    "$(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r);" \
    "HAProxy $(haproxy -v 2>&1 | head -1 | awk '{print $3}'), $(go version | awk '{print $3}')," \
    "Sightline built from $sightline_src."
  echo "ATTACK_SECS=$ATTACK_SECS IDLE_SECS=$IDLE_SECS VICTIM_RATE=$VICTIM_RATE CAP_MB=$CAP_MB IDLE_CONNS=$IDLE_CONNS; proxy on cpu$PX_CPU, backend and victim on cpu$SV_CPU, attacker on cpu$LG_CPU."
  echo
  "$abuse" report -dir "$work" -proxies "$PROXIES" -attacks "$ATTACKS"
} >"$report"
cat "$report"
if [ -n "$out_md" ]; then cp "$report" "$out_md" && log "report written to $out_md"; fi
