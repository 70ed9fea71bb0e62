#!/usr/bin/env bash
# `make screenshots`: the README's pictures, taken from the real TUI attached to the
# demo shop service in tmux, captured with their colours (capture-pane -e) and turned
# into PNG by tests/src/bin/ansi-to-png.rs. Nothing is drawn by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
GO127=.tools/go-1.27.3/go/bin/go
COLS=170
ROWS=46
SOCK=periscope-shots
OUT=screenshots
cargo build --release -q -p periscope-tests --bin ansi-to-png
PID=$(bash scripts/demo-service.sh 200)
cleanup() {
  tmux -L $SOCK kill-server 2>/dev/null || true
  kill "$PID" 2>/dev/null || true
}
trap cleanup EXIT
sleep 0.5
tmux -L $SOCK kill-server 2>/dev/null || true
TERM=xterm-256color tmux -L $SOCK new-session -d -s shots -x $COLS -y $ROWS "target/release/periscope $PID"
keys() { tmux -L $SOCK send-keys -t shots "$@"; sleep 0.3; }
text() { tmux -L $SOCK send-keys -t shots -l "$1"; sleep 0.3; }
shot() {
  sleep "${2:-0.5}"
  tmux -L $SOCK capture-pane -e -p -t shots > "$OUT/$1.ans"
  target/release/ansi-to-png $COLS $ROWS "$OUT/$1.ans" "$OUT/$1.png"
  rm "$OUT/$1.ans"
  echo "screenshots: $OUT/$1.png"
}
mkdir -p $OUT
sleep 1.5

# 1. The function list with a fuzzy search over everything, the standard library too.
keys s
keys /
text "servehttp"
keys Down Down
shot functions-search

# 2. Arguments, results and latency of Login and PlaceOrder, live.
keys Enter
keys s
text "/Login"; keys Enter
keys a r l
keys Escape
text "/PlaceOrder"; keys Enter
keys a r l
keys Escape
text "/PriceOf"; keys Enter
keys a r
keys Escape
keys Tab
shot events 6

# 3. The latency pane on PlaceOrder, its histogram, percentiles and calls per second.
keys Tab
keys ']'
shot latency 4

# 4. One call in full.
keys BTab
keys Up Up Up
keys Enter
shot call-detail

# 5. The condition editor, completing a field and pointing at an error.
keys Escape
keys Tab Tab
keys Escape
text "/SetInfo"; keys Enter
keys c
text "u.Na"
keys Tab
text ' == "alice" && u.Age > "7"'
shot condition-editor

# 6. Who calls Login: its stacks, the top call paths by calls and by total latency.
keys Escape
text "/Login"; keys Enter
keys t
sleep 4
keys T
shot callers

# 7. Login's latency split by whether it failed, side by side.
keys Escape
keys Tab Tab
keys '['
keys v
text "r1 != nil"
keys Enter
shot latency-split 5

keys Escape
keys q

# 8. A large program nobody here wrote: Go's own cmd/pprof (17,000 functions) serving
# its web UI under a request loop, in a 240-column terminal. Names are cut to their last
# package element; the probe captures the request's URI first (C) and times each render.
WIDE=240
PPROF=tests/.build/pprof-go1.27
PROF=tests/.build/mkprof.prof
if [[ ! -x $PPROF ]]; then
  CGO_ENABLED=0 GOCACHE="$PWD/tests/.build/gocache-go1.27" $GO127 build -o $PPROF cmd/pprof
fi
if [[ ! -f $PROF ]]; then
  (cd tests/fixtures/mkprof && CGO_ENABLED=0 GOCACHE="$PWD/../../.build/gocache-go1.27" ../../../$GO127 build -o ../../.build/mkprof .)
  tests/.build/mkprof $PROF >/dev/null 2>&1
fi
PORT=18123
$PPROF -http=127.0.0.1:$PORT -no_browser $PROF >/dev/null 2>&1 &
PPID_=$!
(while kill -0 $PPID_ 2>/dev/null; do
  for v in top flamegraph peek source; do curl -s -o /dev/null "http://127.0.0.1:$PORT/ui/$v?i=$RANDOM"; done
  sleep 0.2
done) &
LOAD=$!
trap 'cleanup; kill $LOAD $PPID_ 2>/dev/null || true' EXIT
sleep 2
tmux -L $SOCK kill-server 2>/dev/null || true
TERM=xterm-256color tmux -L $SOCK new-session -d -s shots -x $WIDE -y $ROWS "target/release/periscope $PPID_"
sleep 2
keys /
text "render"
keys Enter
keys C
text "req.RequestURI"
keys Enter
keys l
keys Tab
sleep 5
tmux -L $SOCK capture-pane -e -p -t shots > "$OUT/large-program.ans"
target/release/ansi-to-png $WIDE $ROWS "$OUT/large-program.ans" "$OUT/large-program.png"
rm "$OUT/large-program.ans"
echo "screenshots: $OUT/large-program.png"
keys q
