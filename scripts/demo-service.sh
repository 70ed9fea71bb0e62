#!/usr/bin/env bash
# Builds the bundled demo shop service (stdlib only) and starts it in the background on
# loopback; prints its pid. Used by `make demo`, `make screenshots` and `make bench`.
# Usage: scripts/demo-service.sh [RPS] [LOG]
set -euo pipefail
cd "$(dirname "$0")/.."
GO=.tools/go-1.27.3/go/bin/go
mkdir -p tests/.build
(cd demo && GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod ../$GO build -o ../tests/.build/demo-shop .)
tests/.build/demo-shop --rps "${1:-50}" > "${2:-/tmp/periscope-demo.log}" 2>&1 &
echo $!
