#!/usr/bin/env bash
# The test command: installs what the tests need, then checks gofmt, runs vet, builds for
# Windows and macOS, runs staticcheck,
# every test under the race detector, and the fuzz targets for a short while.
# Usage: scripts/test.sh            (from anywhere in the repo)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

gobin=$(go env GOPATH)/bin
export PATH="$gobin:$PATH"

# Tools the end-to-end tests drive, pinned.
need() { command -v "$1" >/dev/null 2>&1 || { echo "installing $2"; GOFLAGS= go install "$2"; }; }
need h2spec github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible
# staticcheck 2026.1, whose module version is v0.7.0 (the module proxy
# serves it by that name only); it builds with and checks the Go this module
# requires. A different staticcheck already on PATH is replaced, so that
# every run reports the same checks.
staticcheck_release=2026.1 staticcheck_module=v0.7.0
case "$(staticcheck -version 2>/dev/null)" in
"staticcheck $staticcheck_release ($staticcheck_module)") ;;
*)
	echo "installing staticcheck $staticcheck_release"
	GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$staticcheck_module"
	;;
esac
# The grpc-go interop client, as its own binary (not linked into ours).
[ -x "$gobin/interop-client" ] || {
	echo "installing the grpc-go interop client"
	tmp=$(mktemp -d)
	GOFLAGS= GOBIN="$tmp" go install google.golang.org/grpc/interop/client@v1.85.0
	mv "$tmp/client" "$gobin/interop-client"
	rm -rf "$tmp"
}

# promtool checks the Prometheus exposition, and the Prometheus server runs
# the dashboards' queries (Debian's prometheus package ships both; the
# service it starts is not left running: the tests run their own server).
apt_updated=
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
	echo "installing promtool and prometheus (Debian package prometheus)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt_updated=1
	apt-get install -y -q --no-install-recommends prometheus >/dev/null
	systemctl stop prometheus >/dev/null 2>&1 || service prometheus stop >/dev/null 2>&1 || pkill -x prometheus || true
fi
# Headless Chromium renders the admin status page (Debian package chromium).
if ! command -v chromium >/dev/null 2>&1; then
	echo "installing chromium (Debian package chromium)"
	export DEBIAN_FRONTEND=noninteractive
	[ -n "$apt_updated" ] || apt-get update -q >/dev/null
	apt_updated=1
	apt-get install -y -q --no-install-recommends chromium >/dev/null
fi
# Node.js runs the end-to-end tests' Node peers (its own http2 server, and
# @grpc/grpc-js as server and client): Debian's nodejs and npm where absent.
# The npm packages are pinned by e2e/node/package-lock.json; none of them
# needs its install scripts.
node_pkgs=
command -v node >/dev/null 2>&1 || node_pkgs="$node_pkgs nodejs"
command -v npm >/dev/null 2>&1 || node_pkgs="$node_pkgs npm"
if [ -n "$node_pkgs" ]; then
	echo "installing$node_pkgs (Debian packages)"
	export DEBIAN_FRONTEND=noninteractive
	[ -n "$apt_updated" ] || apt-get update -q >/dev/null
	apt_updated=1
	# shellcheck disable=SC2086 # one word per package
	apt-get install -y -q --no-install-recommends $node_pkgs >/dev/null
fi
echo "== npm ci (e2e/node)"
(cd e2e/node && npm ci --ignore-scripts --no-audit --no-fund)

echo "== gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "not gofmt-formatted (run gofmt -w on them):" >&2
  echo "$unformatted" >&2
  exit 1
fi
echo "== go vet"
go vet ./...
echo "== build for Windows and macOS"
# Linux is where the proxy parks idle connections on epoll and hands its
# sockets over on upgrade; elsewhere it must still build, with those
# features off or refused with a reason (README: Upgrading the binary).
for goos in windows darwin; do
	GOOS=$goos GOARCH=amd64 go build ./...
done
echo "== staticcheck"
staticcheck ./...
echo "== go test -race"
go test -race -count=1 -timeout 20m ./...
echo "== fuzz (short)"
# Budgets are counts of inputs (about 15-20 s each here), not durations:
# Go 1.26's fuzz coordinator can report a spurious "context deadline
# exceeded" when a -fuzztime duration ends on a loaded machine
# (go.dev/issue/75804, fixed in Go 1.27).
go test -run '^$' -fuzz '^FuzzLoad$' -fuzztime 30000x ./proxy/config
go test -run '^$' -fuzz '^FuzzServerFrames$' -fuzztime 15000x ./proxy/h2
go test -run '^$' -fuzz '^FuzzHeaderBlock$' -fuzztime 150000x ./proxy/h2
go test -run '^$' -fuzz '^FuzzMessageCounter$' -fuzztime 500000x ./proxy/grpcproto
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 100000x ./accesslog/envoyfmt
