#!/usr/bin/env bash
# make test-next: the whole suite on CPython 3.14 and 3.15.
#
# This machine's libc is too old for Debian's python3.14/3.15 packages, so
# they live in a Debian sid root made with debootstrap, kept in a cache
# directory outside the checkout ($GR_SID_ROOT, default
# ${XDG_CACHE_HOME:-$HOME/.cache}/goroutine/sid-root) and built once; a root
# whose build did not finish (no .complete stamp) is rebuilt.  The mirror is
# the one this machine's apt uses, read from its sources at run time.
#
# Each run copies the checkout into the root (so the build never touches the
# host's in-place .so), bind-mounts /proc, /dev, /dev/pts and /dev/shm, runs
# `make test` with a venv per version inside the copy, and unmounts on exit.
#
#   tools/test_next.sh [root|shell|VERSION...]   (default: 3.14 3.15)
#   tools/test_next.sh run COMMAND   COMMAND (sh -c) in the copy, in the root
#   PYTEST_ARGS=...  passed to pytest;  GR_NEXT_MAKE_TARGET=test-asan etc.;
#   TSAN_TESTS=...   passed to make test-tsan
#
# tools/dist.sh uses `run` for the 3.14/3.15 wheels, and tools/test_wheel.sh
# uses it on a second root made the same way from other packages (no
# compiler, no libuv): GR_SID_ROOT names the root, GR_ROOT_PACKAGES its
# packages, GR_ROOT_BINDS host directories mounted read-only at the same
# path inside (pyenv's CPythons), GR_ROOT_SRC where in the root the checkout
# is copied (default /src/goroutine; each user has its own, so a dist
# build never replaces the copy a test-next run is using).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
root=${GR_SID_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/goroutine/sid-root}
pkgs=${GR_ROOT_PACKAGES:-"python3.14-dev,python3.15-dev,python3.14-venv,python3.15-venv,gcc,g++,make,pkg-config,libuv1-dev,ca-certificates,util-linux,libc6-dev"}

die() { echo "test-next: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, bind mounts)"

mirror() {
    local f uri=""
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i !~ /security/) {print $i; exit}}' "$f")
        [ -n "$uri" ] && break
    done
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || die "cannot read a Debian mirror from /etc/apt/sources*"
    echo "$uri"
}

build_root() {
    [ -f "$root/.complete" ] && return 0
    command -v debootstrap >/dev/null || {
        echo "installing debootstrap with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    local m; m=$(mirror)
    echo "=== building the sid root in $root (from $m)"
    rm -rf "$root"
    mkdir -p "$(dirname "$root")"
    debootstrap --variant=minbase --include="$pkgs" sid "$root" "$m" \
        > "$root.log" 2>&1 || { tail -n 30 "$root.log"; die "debootstrap failed (log: $root.log)"; }
    touch "$root/.complete"
}

mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM

bind() {  # bind SRC: mount SRC at the same path inside the root
    mkdir -p "$root$1"
    mount --bind "$1" "$root$1"
    mounted+=("$root$1")
}

enter() {
    # pip inside the root: the machine's CA bundle and pip config, copied
    # at every run so they follow the host's.
    [ -f /etc/ssl/certs/ca-certificates.crt ] &&
        cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    [ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
    cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    bind /proc; bind /dev; bind /dev/pts; bind /dev/shm
    local d
    for d in ${GR_ROOT_BINDS:-}; do
        [ -d "$d" ] || continue
        bind "$d"
        mount -o remount,bind,ro "$root$d"
    done
}

src=${GR_ROOT_SRC:-/src/goroutine}
sync_src() {
    mkdir -p "$root$src"
    # The checkout's files, without the host's builds and venvs; the
    # root's own venvs (.venv-3.14, ...) are kept, everything else is
    # replaced so that no file deleted from the checkout lingers.
    find "$root$src" -mindepth 1 -maxdepth 1 ! -name '.venv*' \
        -exec rm -rf {} +
    tar -C "$here" --exclude=./.git --exclude='./.venv*' --exclude=./build \
        --exclude='*.so' --exclude='*.egg-info' --exclude=__pycache__ \
        --exclude=.pytest_cache --exclude=.hypothesis -cf - . |
        tar -C "$root$src" -xf -
}

run_in_root() {
    chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 TERM="${TERM:-dumb}" GR_WERROR="${GR_WERROR:-1}" "$@"
}

case "${1:-}" in
    root) build_root; exit 0 ;;
    shell) build_root; enter; sync_src; run_in_root /bin/bash -c "cd $src && exec bash -i"; exit $? ;;
    run) shift; build_root; enter; sync_src; run_in_root /bin/sh -c "cd $src && $*"; exit $? ;;
esac

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.14 3.15)
target=${GR_NEXT_MAKE_TARGET:-test}

build_root
enter
sync_src
failed=""
for v in "${versions[@]}"; do
    echo "=== Python $v (sid root, make $target)"
    if ! run_in_root /bin/sh -c "cd $src && make --no-print-directory $target \
            PYTHON=/usr/bin/python$v VENV=.venv-$v PYTEST_ARGS='${PYTEST_ARGS:-}' \
            ASAN_VENV=.venv-asan-$v TSAN_VENV=.venv-tsan-$v \
            ${TSAN_TESTS:+TSAN_TESTS='$TSAN_TESTS'}"; then
        failed="$failed $v"
    fi
done
if [ -n "$failed" ]; then echo "=== FAILED on:$failed"; exit 1; fi
echo "=== all passed: ${versions[*]}"
