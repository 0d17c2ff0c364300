// Package e2e holds Sightline's end-to-end tests. They build the real
// sightline binary once, start it with real config files on loopback ports
// of their own, and drive it with real clients (grpc-go, net/http, the
// grpc-go interop client, h2spec) against real upstreams (the grpc-go
// interop TestService from internal/backend, plain net/http servers).
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
// unless the CI environment variable is set, in which case they fail.
package e2e
