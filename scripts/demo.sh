#!/usr/bin/env bash
# Builds the demo shop service, starts it (it drives itself with a client loop on
# loopback), and points periscope at it.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=.tools/go-1.27.3/go/bin/go
mkdir -p tests/.build
(cd demo && GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod ../$GO build -o ../tests/.build/demo-shop .)
tests/.build/demo-shop --rps 50 > /tmp/periscope-demo.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null' EXIT
sleep 0.5
echo "demo shop running as pid $PID"
echo
echo "== its functions (periscope list $PID '^main\\.')"
target/release/periscope list "$PID" '^main\.'
echo
echo "== 5 seconds of Login calls with arguments, results and latency"
target/release/periscope trace --pid "$PID" --duration 5s 'main.(*Store).Login' 'main.(*Store).PlaceOrder if total > 500'
