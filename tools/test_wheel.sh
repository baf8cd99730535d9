#!/usr/bin/env bash
# make test-wheel: each built wheel (dist/, from make dist) installed into a
# fresh venv on a root that has no C compiler and no libuv, and the test
# suite run against that installed package; plus the sdist's one-line
# failure there, where libuv is missing.
#
# The root is a minimal Debian sid made once with debootstrap and cached
# beside the sid root of tools/test_next.sh ($GR_WHEEL_ROOT, default
# ${XDG_CACHE_HOME:-$HOME/.cache}/goroutine/wheel-root): CPython 3.14/3.15
# from Debian, the shared libraries pyenv's CPythons load (pyenv's root is
# mounted read-only at its own path for 3.10-3.13), ca-certificates for
# pip, and nothing else: no gcc, no cc, no libuv, no pkg-config (checked
# before every run).  The suite runs from a copy of tests/ (with docs/,
# examples/, benchmarks/, README.md and CHANGELOG.md, which tests read) in a directory
# that has no goroutine package, so `import goroutine` can only find the
# venv's; conftest.py checks that (GR_TEST_INSTALLED).
#
#   tools/test_wheel.sh [VERSION...]   (default: every version with a wheel)
#   WHEEL_TESTS=...  test files (relative to tests/) instead of the whole suite
#   PYTEST_ARGS=...  passed to pytest
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
root=${GR_WHEEL_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/goroutine/wheel-root}
pkgs="python3.14-venv,python3.15-venv,libssl3t64,libffi8,zlib1g,libbz2-1.0,liblzma5,libsqlite3-0,libreadline8t64,libncursesw6,libexpat1,libuuid1,ca-certificates"

die() { echo "test-wheel: $*" >&2; exit 1; }

ls dist/goroutine_runtime-*.tar.gz >/dev/null 2>&1 || die "no sdist in dist/: run make dist first"
versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
    for w in dist/goroutine_runtime-*-cp3*.whl; do
        [ -f "$w" ] || continue
        t=$(basename "$w" | cut -d- -f3)          # cp311
        versions+=("3.${t#cp3}")
    done
fi
[ ${#versions[@]} -gt 0 ] || die "no wheel in dist/: run make dist first"
for v in "${versions[@]}"; do
    ls dist/goroutine_runtime-*-cp${v/./}-cp${v/./}-*.whl >/dev/null 2>&1 ||
        die "no wheel for CPython $v in dist/ (make dist DIST_VERSIONS=$v)"
done

GR_SID_ROOT=$root GR_ROOT_PACKAGES=$pkgs GR_ROOT_BINDS=$pyenv_root \
GR_ROOT_SRC=/src/goroutine-wheel \
    exec "$here/tools/test_next.sh" run "
set -u
fail() { echo \"test-wheel: \$*\" >&2; exit 1; }
for tool in cc gcc c99 clang pkg-config; do
    ! command -v \$tool >/dev/null || fail \"this root has \$tool: it must have no compiler and no libuv\"
done
! ls /usr/lib/*/libuv* /lib/*/libuv* /usr/include/uv.h >/dev/null 2>&1 ||
    fail 'this root has libuv: it must have none'
python_for() {
    case \$1 in
        3.14|3.15) echo /usr/bin/python\$1 ;;
        *) ls -d $pyenv_root/versions/\$1.*/bin/python\$1 2>/dev/null | sort -V | tail -n 1 ;;
    esac
}
failed=''
first=1
tests=tests
[ -z \"${WHEEL_TESTS:-}\" ] || tests=\$(for t in ${WHEEL_TESTS:-}; do printf 'tests/%s ' \$t; done)
for v in ${versions[*]}; do
    py=\$(python_for \$v)
    [ -n \"\$py\" ] && [ -x \"\$py\" ] || fail \"no CPython \$v in the root\"
    whl=\$(ls dist/goroutine_runtime-*-cp\$(echo \$v | tr -d .)-*.whl)
    echo \"=== CPython \$v (\$py): \$(basename \$whl)\"
    venv=/tmp/wheel-venv-\$v; work=/tmp/wheel-test-\$v
    rm -rf \$venv \$work
    \$py -m venv \$venv || { failed=\"\$failed \$v\"; continue; }
    \$venv/bin/pip install -q \"\$whl[test]\" 2>&1 | grep -v '^WARNING: Location' || true
    if [ \$first = 1 ]; then
        first=0
        # The sdist where libuv is missing: one line that says what to do.
        \$venv/bin/pip install -q 'setuptools>=77' wheel 2>&1 | grep -v '^WARNING: Location' || true
        out=\$(\$venv/bin/pip install --no-build-isolation --no-deps --target /tmp/sdist-target dist/goroutine_runtime-*.tar.gz 2>&1)
        n=\$(printf '%s\n' \"\$out\" | grep -c \"^ *error: goroutine-runtime: libuv's development files were not found\" || true)
        if [ \"\$n\" != 1 ] || printf '%s\n' \"\$out\" | grep -q Traceback; then
            printf '%s\n' \"\$out\"; echo '=== the sdist did not fail with one clear line'; failed=\"\$failed sdist\"
        else
            echo '=== sdist without libuv: failed with one line, as it must'
        fi
    fi
    mkdir -p \$work
    cp -r tests docs examples benchmarks README.md CHANGELOG.md pyproject.toml \$work/
    find \$work -name __pycache__ -prune -exec rm -rf {} +
    (cd \$work && \$venv/bin/python -m goroutine &&
        GR_TEST_INSTALLED=\$venv \$venv/bin/python -m pytest -p no:cacheprovider \$tests ${PYTEST_ARGS:-}) ||
        failed=\"\$failed \$v\"
done
if [ -n \"\$failed\" ]; then echo \"=== test-wheel FAILED on:\$failed\"; exit 1; fi
echo \"=== test-wheel passed: ${versions[*]}\"
"
