#!/bin/sh
# The resilience soak: calls at 200/s through the real binary while
# backends are SIGKILLed and restarted at random; no call may fail and the
# proxy must not grow. Not part of the test command. SIGHTLINE_SOAK sets
# how long it runs (default 3m).
set -eu
cd "$(dirname "$0")/.."
: "${SIGHTLINE_SOAK:=3m}"
export SIGHTLINE_SOAK
exec go test -count=1 -run '^TestSoak$' -timeout 30m -v ./e2e/
