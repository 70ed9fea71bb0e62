#!/usr/bin/env bash
# `make demo`: starts the demo shop service (it drives itself with a client loop on
# loopback) and opens the periscope TUI on it. Quitting the TUI stops the service.
set -euo pipefail
cd "$(dirname "$0")/.."
PID=$(bash scripts/demo-service.sh 100)
trap 'kill $PID 2>/dev/null' EXIT
sleep 0.5
if [ ! -t 0 ] || [ ! -t 1 ]; then
  echo "make demo opens a full-screen UI: run it in a terminal." >&2
  echo "Without one, try: target/release/periscope trace --pid $PID --duration 5s 'main.(*Store).Login'" >&2
  exit 2
fi
exec_status=0
target/release/periscope "$PID" || exec_status=$?
exit $exec_status
