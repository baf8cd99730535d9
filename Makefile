# The project's one entry point: every target installs what it is missing,
# builds, then runs. Only the system packages need root (apt-get).

PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
PYTEST_ARGS ?=
PYVERSIONS ?= 3.10 3.11 3.12 3.13
# Where test-all and dist look for CPython 3.10-3.13 first (then python3.X
# on PATH): pyenv's root, as $PYENV_ROOT, `pyenv root` or ~/.pyenv says.
PYENV_ROOT ?= $(or $(shell pyenv root 2>/dev/null),$(HOME)/.pyenv)
export PYENV_ROOT
export GR_WERROR ?= 1

.PHONY: all demo check-layers typecheck test test-all test-next test-asan test-tsan test-debug bench stress valgrind deps build clean dist test-wheel pygolang-compat

all: build

# libuv's headers and pkg-config: apt-get them when we are root on Debian,
# otherwise say what to install.
deps:
	@if ! pkg-config --exists libuv 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing libuv1-dev and pkg-config with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq libuv1-dev pkg-config >/dev/null; \
	  else \
	    echo "goroutine needs libuv's development files:"; \
	    echo "  Debian/Ubuntu: sudo apt-get install libuv1-dev pkg-config"; \
	    echo "  Fedora:        sudo dnf install libuv-devel pkgconf"; \
	    exit 1; \
	  fi; \
	fi

# A venv with the test extras and an editable install.  Rebuilt when the
# packaging files change.
$(VENV)/.installed: pyproject.toml setup.py | deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[test]'
	touch $@

build: deps $(VENV)/.installed
	$(PY) setup.py -q build_ext --inplace

# The C files must layer without a cycle (docs/design.md, "Layout"):
# tools/check_layers.py reads the graph from the object files.
check-layers: build
	$(PY) tools/check_layers.py

demo: build
	$(PY) examples/tour.py

test: build
	$(PY) -m pytest $(PYTEST_ARGS)

# The typing stubs against the built module (mypy.stubtest: every name,
# signature and class property of goroutine._core) and the package under
# mypy with pyproject's [tool.mypy] settings.  mypy comes from the
# typecheck extra.
$(VENV)/.typecheck: pyproject.toml | $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test,typecheck]'
	touch $@

typecheck: build $(VENV)/.typecheck
	$(PY) -m mypy.stubtest --mypy-config-file pyproject.toml goroutine._core
	$(PY) -m mypy

# Every CPython 3.10-3.13 on this machine (PYENV_ROOT's or on PATH): a venv each,
# the whole suite each.  Absent versions are skipped, a failing one fails.
test-all: deps
	@failed=""; ran=""; \
	for v in $(PYVERSIONS); do \
	  py=$$(ls -d $(PYENV_ROOT)/versions/$$v.*/bin/python$$v 2>/dev/null | sort -V | tail -n 1); \
	  [ -n "$$py" ] || py=$$(command -v python$$v 2>/dev/null || true); \
	  if [ -z "$$py" ]; then echo "=== Python $$v: not found, skipped"; continue; fi; \
	  echo "=== Python $$v ($$py)"; ran="$$ran $$v"; \
	  $(MAKE) --no-print-directory test PYTHON=$$py VENV=.venv-$$v || failed="$$failed $$v"; \
	done; \
	echo "=== ran:$$ran"; \
	if [ -z "$$ran" ]; then echo "no Python 3.10-3.13 found"; exit 1; fi; \
	if [ -n "$$failed" ]; then echo "=== FAILED on:$$failed"; exit 1; fi; \
	echo "=== all passed"

# The whole suite on CPython 3.14 and 3.15 (NEXT_VERSIONS).  Debian's
# python3.14/3.15 need a newer libc than Debian 12, so they live in a
# Debian sid root made once with debootstrap and kept outside the checkout
# (GR_SID_ROOT, default ~/.cache/goroutine/sid-root); the checkout is
# copied into it and built there, a venv per version.  Root only.
# NEXT_TARGET=test-asan (or test-tsan) runs that target there instead.
NEXT_VERSIONS ?= 3.14 3.15
NEXT_TARGET   ?= test
test-next:
	GR_NEXT_MAKE_TARGET=$(NEXT_TARGET) PYTEST_ARGS="$(PYTEST_ARGS)" \
	  $(if $(filter command line,$(origin TSAN_TESTS)),TSAN_TESTS="$(TSAN_TESTS)") \
	  tools/test_next.sh $(NEXT_VERSIONS)

# The release: dist/ gets the sdist and one manylinux wheel per CPython in
# DIST_VERSIONS (3.14 and 3.15 built in the sid root of test-next), libuv
# bundled by auditwheel (tools/dist.sh).  test-wheel installs each wheel in
# dist/ (or WHEEL_VERSIONS) into a fresh venv on a root with no compiler
# and no libuv and runs the suite (or the files in WHEEL_TESTS) against it
# (tools/test_wheel.sh).  Root only (debootstrap, chroot).
DIST_VERSIONS ?= 3.10 3.11 3.12 3.13 3.14 3.15
WHEEL_VERSIONS ?=
WHEEL_TESTS ?=
dist:
	DIST_VERSIONS="$(DIST_VERSIONS)" PYTHON=$(PYTHON) tools/dist.sh
test-wheel:
	PYTEST_ARGS="$(PYTEST_ARGS)" WHEEL_TESTS="$(WHEEL_TESTS)" tools/test_wheel.sh $(WHEEL_VERSIONS)

# AddressSanitizer + UBSan.  CPython itself is not instrumented, so the
# runtime is preloaded; leak detection is off here because the interpreter
# keeps its own allocations alive at exit (make test-debug checks reference
# leaks).  The sanitized build has a build tree of its own (build/asan),
# rebuilt every time, so it can never pick up plain objects; the tests
# import it from there, run from tests/ so the source package does not
# shadow it.
# The per-test hang catcher, 3x pyproject's 120 s: ASan and UBSan slow the
# core 2-3x, and test_leaks' 3,300 rounds under tracemalloc then took over
# 120 s on a loaded 2-core machine (the map workload, in a clean-clone run).
ASAN_TIMEOUT ?= 360
# ASAN_TESTS: which test files (relative to tests/), all by default.
ASAN_TESTS ?= .
ASAN_VENV := .venv-asan
ASAN_PY   := $(ASAN_VENV)/bin/python
test-asan: deps
	@[ -x $(ASAN_PY) ] || $(PYTHON) -m venv $(ASAN_VENV)
	$(ASAN_PY) -m pip install -q --upgrade pip setuptools wheel pytest pytest-timeout hypothesis ipykernel nbclient nbformat coverage
	$(ASAN_PY) -m pip uninstall -q -y goroutine goroutine-runtime 2>/dev/null || true
	rm -rf build/asan
	GR_SANITIZE=address,undefined $(ASAN_PY) setup.py -q build --build-base build/asan
	lib=$$(ls -d $(CURDIR)/build/asan/lib.*); \
	nm -D $$lib/goroutine/_core*.so | grep -q __asan_report || { echo "not an ASan build"; exit 1; }; \
	cd tests && PYTHONPATH=$$lib LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:detect_stack_use_after_return=0:allocator_may_return_null=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  GR_TEST_SANITIZED=1 ../$(ASAN_PY) -m pytest -p no:cacheprovider -c ../pyproject.toml --rootdir=.. \
	  -o timeout=$(ASAN_TIMEOUT) $(ASAN_TESTS) $(PYTEST_ARGS)

# ThreadSanitizer over the stress test and the concurrency suites.  Every
# goroutine is a TSan fiber (gstack.c reports each stack switch), so races
# between goroutines count even on one M.  CPython is not instrumented, so
# the runtime is preloaded and only our C is checked; CPython's GIL is a
# pthread mutex and condvar, which TSan intercepts, so accesses ordered by
# the GIL are ordered for TSan too.  Reports go to build/tsan/log, one
# file per process (the tests' subprocesses included): any file there
# fails the run.  tools/tsan.supp holds the suppressions, each with its
# reason.  setarch -R: on kernels with more ASLR entropy than gcc 12's TSan
# expects (vm.mmap_rnd_bits > 28) it dies with "unexpected memory mapping";
# harmless elsewhere.  Tests that need more live goroutines than TSan's
# 8128 threads are skipped (conftest.beyond_tsan_thread_limit).
TSAN_VENV  := .venv-tsan
TSAN_PY    := $(TSAN_VENV)/bin/python
TSAN_TESTS ?= test_stress.py test_chan.py test_select.py test_sync.py \
              test_map.py test_time.py test_context.py test_goroutine.py \
              test_errgroup.py test_async.py test_thread_locks.py \
              test_interp.py
TSAN_LOG   := $(CURDIR)/build/tsan/log
test-tsan: deps
	@[ -x $(TSAN_PY) ] || $(PYTHON) -m venv $(TSAN_VENV)
	$(TSAN_PY) -m pip install -q --upgrade pip setuptools wheel pytest pytest-timeout hypothesis
	$(TSAN_PY) -m pip uninstall -q -y goroutine goroutine-runtime 2>/dev/null || true
	rm -rf build/tsan
	GR_SANITIZE=thread $(TSAN_PY) setup.py -q build --build-base build/tsan
	mkdir -p $(TSAN_LOG)
	lib=$$(ls -d $(CURDIR)/build/tsan/lib.*); \
	nm -D $$lib/goroutine/_core*.so | grep -q __tsan_switch_to_fiber || { echo "not a TSan build"; exit 1; }; \
	cd tests && PYTHONPATH=$$lib LD_PRELOAD="$$(gcc -print-file-name=libtsan.so)" \
	  TSAN_OPTIONS="log_path=$(TSAN_LOG)/tsan suppressions=$(CURDIR)/tools/tsan.supp report_signal_unsafe=0 allocator_may_return_null=1" \
	  GR_TEST_TSAN=1 setarch $$(uname -m) -R ../$(TSAN_PY) -m pytest -p no:cacheprovider -c ../pyproject.toml --rootdir=.. $(TSAN_TESTS) $(PYTEST_ARGS); \
	status=$$?; cd ..; \
	if ls $(TSAN_LOG)/tsan.* >/dev/null 2>&1; then \
	  cat $(TSAN_LOG)/tsan.*; echo "=== ThreadSanitizer reported: see above ($(TSAN_LOG))"; exit 1; \
	fi; \
	exit $$status

# The whole suite on CPython's debug build: Debian's python3.11-dbg has
# Py_DEBUG (the interpreter's own asserts, which check how pystate.c
# handles thread states) and Py_REF_DEBUG (sys.gettotalrefcount, with
# which test_leaks checks that reference counts stay flat).  A venv of its
# own; the extension is built in place, where its suffix (cpython-311d)
# keeps it apart from the release build and makes the debug interpreter
# -- and only it -- pick it, in the interpreters the tests start too.
DEBUG_PYTHON ?= python3.11-dbg
DEBUG_VENV   := .venv-debug
DEBUG_PY     := $(DEBUG_VENV)/bin/python
test-debug: deps
	@if ! command -v $(DEBUG_PYTHON) >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing python3-dbg and python3.11-dev with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq python3-dbg python3.11-dev python3.11-venv >/dev/null; \
	  else \
	    echo "make test-debug needs CPython's debug build:"; \
	    echo "  Debian/Ubuntu: sudo apt-get install python3-dbg python3.11-dev python3.11-venv"; \
	    exit 1; \
	  fi; \
	fi
	@if [ ! -f $(DEBUG_VENV)/.installed ]; then \
	  $(DEBUG_PYTHON) -m venv $(DEBUG_VENV) && \
	  $(DEBUG_PY) -m pip install -q --upgrade pip setuptools wheel && \
	  $(DEBUG_PY) -m pip install -q --no-build-isolation -e '.[test]' && \
	  touch $(DEBUG_VENV)/.installed; \
	fi
	$(DEBUG_PY) setup.py -q build_ext --inplace
	GR_TEST_DEBUG=1 $(DEBUG_PY) -m pytest $(PYTEST_ARGS)

# The stress tests for longer than the suite's default 3 s each, and the
# concurrent channel model tests with more generated programs.
STRESS_SECONDS ?= 300
MODEL_EXAMPLES ?= 3000
stress: build
	GOROUTINE_STRESS_SECONDS=$(STRESS_SECONDS) GOROUTINE_MODEL_EXAMPLES=$(MODEL_EXAMPLES) \
	  $(PY) -m pytest -q -p no:timeout tests/test_stress.py \
	  tests/test_chan_interleavings.py tests/test_chan_handoff_model.py

# memcheck over a short workload; fails on any report inside the C core.
valgrind: build
	$(PY) tools/valgrind_check.py tools/valgrind_workload.py

# The peers (gevent, py-routine, pygoroutine, matplotlib for the chart) and,
# as root on Debian, Go and wrk.
GMEM_N ?= 100000
bench: build
	$(PY) -m pip install -q -e '.[bench]'
	@# pygolang 0.1 builds only with Cython < 3 (a build constraint); if it
	@# still fails here, its column reads n/a.
	@$(PY) -c "import golang" 2>/dev/null || $(PY) -m pip install -q \
	  --build-constraint benchmarks/build-constraints.txt pygolang \
	  || echo "pygolang did not build: its column will read n/a"
	@if ! command -v go >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null || true; fi
	@# wrk loads the HTTP servers of benchmarks/http.py; without it those
	@# rows read "wrk not installed: skipped".
	@if ! command -v wrk >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null || true; fi
	$(PY) -m benchmarks $(BENCH_ARGS)
	@# The HTTP hello-world server under wrk and memory per idle connection,
	@# goroutine.net against asyncio and gevent (docs/benchmarks.md).
	$(PY) -m benchmarks.http $(HTTP_BENCH_ARGS)
	@# Where a parked goroutine's memory goes (docs/design.md); GMEM_N=1000000
	@# checks that a million fit.
	$(PY) -m benchmarks.gmem $(GMEM_N) func
	$(PY) -m benchmarks.map_ops $(MAP_OPS_ARGS)
	@# Worker interpreters (issue 19): CPU-bound Python over 2 of them.
	$(PY) -m benchmarks.interp_cpu

# pygolang's own test files run against this package, `import golang`
# mapped to goroutine (tools/pygolang_compat.py; docs/coming-from.md).
# PYGOLANG_SRC: a pygolang checkout (the directory holding golang/).
pygolang-compat: build
	@test -n "$(PYGOLANG_SRC)" || { echo "set PYGOLANG_SRC to a pygolang checkout"; exit 1; }
	$(PY) -m pip install -q six
	$(PY) tools/pygolang_compat.py $(PYGOLANG_SRC) -v

clean:
	rm -rf build dist goroutine/*.so .venv .venv-* *.egg-info .pytest_cache
