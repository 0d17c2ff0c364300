#!/usr/bin/env bash
# scale.sh — what idle clusters and hosts cost: for each case, the time
# from start to /ready, the RSS 10 s after (VmRSS), and the time a reload
# that changes one cluster takes to apply (SIGHUP until server.config_reload
# moves). Static clusters, no health checks, no traffic; every host is an
# address nothing listens on (a pool is only made when a host is picked).
#
#   bench/scale.sh                       # 1, 1,000 and 10,000 clusters of 2 hosts; 1 cluster of 10,000 and 100,000 hosts
#   CASES="c10000 h100000" bench/scale.sh
#   SIGHTLINE_BIN=/path/to/sightline bench/scale.sh
#
# Prints a markdown table. Each case is capped at CAP_SECS (default 60)
# to become ready; a case that does not is printed as a timeout.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
CASES=${CASES:-"c1 c1000 c10000 h10000 h100000"}
CAP_SECS=${CAP_SECS:-60}
SETTLE_SECS=${SETTLE_SECS:-10}
ADMIN=127.0.0.1:19901
work=$(mktemp -d "${TMPDIR:-/tmp}/scale.XXXXXX")
pid=
cleanup() { [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

bin=${SIGHTLINE_BIN:-}
if [ -z "$bin" ]; then
  bin=$work/sightline
  (cd "$repo" && go build -o "$bin" ./cmd/sightline) || exit 1
fi

# config N_CLUSTERS HOSTS_PER_CLUSTER WEIGHT_OF_THE_LAST -> stdout
config() {
  local nc=$1 nh=$2 w=$3 c h
  printf 'admin: {address: %s}\nserver: {drain_time: 1ms, drain_timeout: 1s}\n' "$ADMIN"
  printf 'listeners:\n  - name: in\n    address: 127.0.0.1:18180\n    virtual_hosts:\n      - name: all\n        domains: ["*"]\n        routes:\n          - match: {prefix: /}\n            cluster: c0\nclusters:\n'
  for (( c=0; c<nc; c++ )); do
    printf '  - name: c%d\n    endpoints:\n' "$c"
    for (( h=0; h<nh; h++ )); do
      local weight=1
      [ "$c" -eq $(( nc - 1 )) ] && [ "$h" -eq 0 ] && weight=$w
      printf '      - {address: 127.0.0.%d:%d, weight: %d}\n' $(( 1 + (h / 60000) )) $(( 1024 + (c * nh + h) % 60000 )) "$weight"
    done
  done
}

ms_now() { date +%s%3N; }
if curl -fsS -o /dev/null "http://$ADMIN/ready" 2>/dev/null; then
  echo "scale.sh: something already answers on $ADMIN; stop it first" >&2; exit 1
fi
reloads() { curl -fsS "http://$ADMIN/stats?filter=^server.config_reload\$" 2>/dev/null | awk -F': ' '{print $2}'; }
rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }

echo "| case | clusters | hosts | ready s | RSS MiB | per cluster KB | per host KB | one-cluster reload s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
base_rss=
for c in $CASES; do
  case $c in
    c*) nc=${c#c}; nh=2 ;;
    h*) nc=1; nh=${c#h} ;;
  esac
  config "$nc" "$nh" 1 >"$work/cfg.yaml"
  t0=$(ms_now)
  GOMAXPROCS=2 "$bin" -c "$work/cfg.yaml" --log-level warn >"$work/log" 2>&1 &
  pid=$!
  ready=timeout
  while (( $(ms_now) - t0 < CAP_SECS * 1000 )); do
    if curl -fsS -o /dev/null "http://$ADMIN/ready" 2>/dev/null; then ready=$(( $(ms_now) - t0 )); break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  if [ "$ready" = timeout ]; then
    echo "| $c | $nc | $(( nc * nh )) | timeout | | | | |"
    kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=; continue
  fi
  sleep "$SETTLE_SECS"
  rss=$(rss_kib "$pid")
  [ -z "$base_rss" ] && [ "$c" = c1 ] && base_rss=$rss
  per_c=; per_h=
  if [ -n "$base_rss" ] && [ "$c" != c1 ]; then
    case $c in
      c*) per_c=$(awk -v r="$rss" -v b="$base_rss" -v n="$nc" 'BEGIN{printf "%.1f", (r-b)*1.024/n}') ;;
      h*) per_h=$(awk -v r="$rss" -v b="$base_rss" -v n="$nh" 'BEGIN{printf "%.2f", (r-b)*1.024/n}') ;;
    esac
  fi
  before=$(reloads)
  config "$nc" "$nh" 2 >"$work/cfg.yaml"
  t1=$(ms_now); kill -HUP "$pid"; reload=timeout
  while (( $(ms_now) - t1 < CAP_SECS * 1000 )); do
    now=$(reloads)
    if [ -n "$now" ] && [ "$now" != "$before" ]; then reload=$(( $(ms_now) - t1 )); break; fi
    sleep 0.01
  done
  fmt() { [ "$1" = timeout ] && echo timeout || awk -v m="$1" 'BEGIN{printf "%.2f", m/1000}'; }
  echo "| $c | $nc | $(( nc * nh )) | $(fmt "$ready") | $(( rss / 1024 )) | $per_c | $per_h | $(fmt "$reload") |"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=
done
