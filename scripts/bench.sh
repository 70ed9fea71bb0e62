#!/usr/bin/env bash
# Benchmarks measured in one run against a baseline, printed as ratios. Run as root.
# 1. Catalog: periscope loading every function, type, ABI location and probe point of a
#    large Go binary (cmd/go), against `gdb -batch -ex 'info functions'` on the same file.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=$PWD/.tools/go-1.27.3/go/bin/go
BIN=tests/.build/bench-cmd-go
mkdir -p tests/.build
if [ ! -x "$BIN" ]; then
  echo "bench: building cmd/go with $($GO version | cut -d' ' -f3) (once)"
  (cd "$($GO env GOROOT)/src" && GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod "$GO" build -o "$OLDPWD/$BIN" cmd/go)
fi
ms() { local s e; s=$(date +%s%N); "$@" > /dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
best() { local b=999999 t; for _ in 1 2 3 4 5; do t=$(ms "$@"); (( t < b )) && b=$t; done; echo "$b"; }
# `list` loads the whole catalog (every function's types, ABI locations and probe
# points) and prints every signature, as gdb prints every function; `list --json` also
# serializes all locations and probe addresses.
P=$(best target/release/periscope list "$BIN")
J=$(best target/release/periscope list --json "$BIN")
G=$(best gdb -batch -ex 'info functions' "$BIN")
N=$(target/release/periscope list "$BIN" | wc -l)
echo "catalog of cmd/go ($N functions, best of 5): periscope list ${P} ms (--json ${J} ms), gdb info functions ${G} ms: $(awk "BEGIN{printf \"%.1f\", $G/($P>0?$P:1)}")x faster ($(awk "BEGIN{printf \"%.1f\", $G/($J>0?$J:1)}")x with --json); target: < 300 ms and >= 10x"
# 2. Probes: cost per call against a plain tracefs uprobe, the reader's event rate, and
#    the demo service's throughput under wrk with and without probes.
cargo build --release -q -p periscope-tests --bin bench-probes --bin kernel-check
target/release/bench-probes
# (bench-probes ends with the same costs on the older kernels, in VMs: kernel-check --bench.)
# 4. A program of several processes (--exe): start-up with 8 processes and 10 probes, a
#    process started later, and the reader's rate over 8 processes against one.
cargo build --release -q -p periscope-tests --bin bench-programs
target/release/bench-programs
# 5. Where a real workload's returns are seen: pprof's web UI under a request loop,
#    latency probes on its 20 busiest UI functions.
cargo build --release -q -p periscope-tests --bin bench-returns
target/release/bench-returns
# 3. The TUI at 100,000 events per second: update + draw time a frame.
cargo build --release -q -p periscope-tests --bin bench-tui
target/release/bench-tui
