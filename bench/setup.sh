#!/usr/bin/env bash
# setup.sh — install everything compare.sh needs on a fresh Debian 12 (bookworm)
# machine with Go at /usr/local/go (the project's machine kind). Idempotent: a second
# run installs nothing. Quiet unless something fails; prints one line of versions.
#
#   apt:  nginx haproxy nghttp2-client (h2load, nghttp) jq iproute2 (ss) util-linux
#         (taskset, lscpu) bsdextrautils (column) procps (ps) python3 openssl (TLS=1 certificates)
#   go:   $HOME/go/bin/server  google.golang.org/grpc/interop/server   @ $GRPC_VERSION
#         $HOME/go/bin/ghz     github.com/bojand/ghz/cmd/ghz            @ $GHZ_VERSION
#         $HOME/go/bin/caddy   github.com/caddyserver/caddy/v2/cmd/caddy @ $CADDY_VERSION
#
# The Debian packages may start system nginx/haproxy services; they are stopped (by
# their service or pid file) so they cannot disturb the benchmark or hold its ports.
set -euo pipefail

GRPC_VERSION=${GRPC_VERSION:-v1.85.0}
GHZ_VERSION=${GHZ_VERSION:-v0.120.0}      # `ghz --version` prints "dev" for go-installed builds
CADDY_VERSION=${CADDY_VERSION:-v2.11.9}
GOBIN_DIR=$HOME/go/bin                   # where compare.sh looks (SERVER, CADDY, GHZ)
APT_PKGS=(nginx haproxy nghttp2-client jq iproute2 util-linux bsdextrautils procps python3 openssl)
BENCH_PORTS=(50051 50052 50053 50054 18081 18082 18083)

LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/bench-setup.XXXXXX")
trap 'rm -rf "$LOGDIR"' EXIT
die() { echo "setup.sh: $*" >&2; exit 1; }
run_logged() {  # name cmd... : run quietly, show the log on failure
  local name=$1; shift
  if ! "$@" >"$LOGDIR/$name.log" 2>&1; then
    echo "setup.sh: $name failed: $*" >&2; tail -n 40 "$LOGDIR/$name.log" >&2; exit 1
  fi
}

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "need root (or sudo) for apt-get"
  SUDO=(sudo -n)
fi

# ------------------------------------------------------------------ apt packages
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  run_logged apt-update "${SUDO[@]}" apt-get update -q
  run_logged apt-install "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
fi

# ------------------------------------------------------------------ system services
# Stop a system nginx/haproxy that the package install (or an earlier boot) started, by
# its service or pid file only; compare.sh starts its own instances on its own ports.
pid_alive() {  # pidfile comm -> 0 if the pid in the file is a live process named comm
  local pid
  [ -r "$1" ] || return 1
  pid=$(tr -dc '0-9' <"$1" | head -c 10); [ -n "$pid" ] || return 1
  [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$2" ]
}
stop_service() {  # name pidfile
  local svc=$1 pidfile=$2 pid i
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    "${SUDO[@]}" systemctl stop "$svc" >/dev/null 2>&1 || true
    "${SUDO[@]}" systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
  if pid_alive "$pidfile" "$svc" && [ -x /etc/init.d/"$svc" ]; then
    "${SUDO[@]}" /etc/init.d/"$svc" stop >/dev/null 2>&1 || true
  fi
  if pid_alive "$pidfile" "$svc"; then   # last resort: TERM the pid from the pid file
    pid=$(tr -dc '0-9' <"$pidfile" | head -c 10)
    "${SUDO[@]}" kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do pid_alive "$pidfile" "$svc" || break; sleep 0.1; done
  fi
  if pid_alive "$pidfile" "$svc"; then die "system $svc (pid $(cat "$pidfile")) is still running"; fi
}
stop_service nginx /run/nginx.pid
stop_service haproxy /run/haproxy.pid
for port in "${BENCH_PORTS[@]}"; do
  if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
    echo "setup.sh: warning: port $port is in use; compare.sh needs it free:" >&2
    ss -Hltnp "sport = :$port" >&2 || true
  fi
done

# ------------------------------------------------------------------ Go tools
if ! command -v go >/dev/null; then
  [ -x /usr/local/go/bin/go ] || die "go not found (expected on PATH or at /usr/local/go/bin/go)"
  PATH=/usr/local/go/bin:$PATH
fi
mod_version() {  # binary module-path -> version of that main module, or nothing
  go version -m "$1" 2>/dev/null | awk -v m="$2" '$1=="mod" && $2==m {print $3; exit}'
}
go_tool() {  # binary-name package module version
  local bin=$GOBIN_DIR/$1 pkg=$2 mod=$3 ver=$4
  if [ -x "$bin" ] && [ "$(go version -m "$bin" 2>/dev/null | awk '$1=="path"{print $2; exit}')" = "$pkg" ] \
     && [ "$(mod_version "$bin" "$mod")" = "$ver" ]; then
    return 0
  fi
  mkdir -p "$GOBIN_DIR"
  # run outside any module so a go.work / go.mod in the current directory cannot interfere
  run_logged "go-install-$1" env -C "$LOGDIR" GOBIN="$GOBIN_DIR" GOFLAGS= go install "$pkg@$ver"
  [ "$(mod_version "$bin" "$mod")" = "$ver" ] || die "$bin is not $mod $ver after go install"
}
go_tool server google.golang.org/grpc/interop/server google.golang.org/grpc "$GRPC_VERSION"
go_tool ghz github.com/bojand/ghz/cmd/ghz github.com/bojand/ghz "$GHZ_VERSION"
go_tool caddy github.com/caddyserver/caddy/v2/cmd/caddy github.com/caddyserver/caddy/v2 "$CADDY_VERSION"

# ------------------------------------------------------------------ summary
for t in nginx haproxy h2load nghttp jq taskset ss column ps /usr/bin/python3 openssl; do
  command -v "$t" >/dev/null || die "$t still missing after install"
done
echo "bench setup ok:" \
  "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')," \
  "haproxy $(haproxy -v 2>&1 | head -1 | awk '{print $3}')," \
  "h2load $(h2load --version 2>&1 | head -1 | awk '{print $2}')," \
  "grpc-go server $(mod_version "$GOBIN_DIR/server" google.golang.org/grpc)," \
  "ghz $(mod_version "$GOBIN_DIR/ghz" github.com/bojand/ghz)," \
  "caddy $(mod_version "$GOBIN_DIR/caddy" github.com/caddyserver/caddy/v2)," \
  "$(go version | awk '{print $3}')," \
  "python $(/usr/bin/python3 -c 'import platform; print(platform.python_version())')"
