# periscope: `make demo` and `make test` are the two entry points; both install what is
# missing first (scripts/setup.sh is idempotent and fast when everything is there).
SHELL := /bin/bash
CARGO ?= cargo
GO127 := .tools/go-1.27.3/go/bin/go
export GOTOOLCHAIN := local
export GOPROXY := off
export GOFLAGS := -mod=mod

.PHONY: setup build test lint demo bench screenshots clean

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release -p periscope

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings

# Tests run real probes on real Go processes: they share the kernel, so one at a time.
test: setup
	$(CARGO) build --release -p periscope
	$(CARGO) test --release --workspace -- --test-threads=1
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings

demo: build
	@bash scripts/demo.sh

bench: build
	@bash scripts/bench.sh

screenshots: build
	@bash scripts/screenshots.sh

clean:
	$(CARGO) clean
	rm -rf tests/.build
