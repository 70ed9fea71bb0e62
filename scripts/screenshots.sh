#!/usr/bin/env bash
# `make screenshots`: the README's pictures, taken from the real TUI attached to the
# demo shop service in tmux, captured with their colours (capture-pane -e) and turned
# into PNG by tests/src/bin/ansi-to-png.rs. Nothing is drawn by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
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
