// Package e2e holds Sightline's end-to-end tests. They build the real
// sightline binary once, start it with real config files on loopback ports
// of their own, and drive it with real clients (grpc-go, net/http, the
// grpc-go interop client, h2spec, @grpc/grpc-js) against real upstreams
// (the grpc-go interop TestService from internal/backend, plain net/http
// servers, Node's http2 server and @grpc/grpc-js, from e2e/node).
//
// Run them with
//
//	go test ./e2e/
//
// Under -race the proxy binary is built with the race detector too, so a
// data race in the proxy fails the test whose traffic caused it.
//
// The interop and h2spec tests need the interop-client and h2spec binaries
// (scripts/test.sh installs them); without them those tests are skipped,
// unless the CI environment variable is set, in which case they fail. The
// Node peers need node and the packages of e2e/node (scripts/test.sh runs
// npm ci there); without them those tests fail, saying what to install.
package e2e
