"""Build of goroutine._core: one C extension from src/, linked against libuv.

Platforms: Linux on x86-64 and aarch64 (the two context switches in
src/switch_*.S; src/switch.S picks one by the compiler's macros), CPython
3.10-3.15 with the GIL.  libuv is found with pkg-config, and only when the
extension is compiled: building an sdist, or reading the metadata, needs
neither libuv nor a compiler.

Environment knobs (the Makefile sets them; a plain `pip install .` needs none):
  GR_SANITIZE=address,undefined   build with those sanitizers (make test-asan)
  GR_SANITIZE=thread              ThreadSanitizer build (make test-tsan)
  GR_WERROR=1                     turn warnings into errors (CI)
"""
import glob
import os
import shlex
import shutil
import subprocess
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# The one line a user sees when libuv is missing (tests/test_build.py and
# tools/test_wheel.sh look for it).
NO_LIBUV = ("goroutine-runtime: libuv's development files were not found "
            "(`pkg-config libuv` failed): install pkg-config and libuv "
            "(Debian/Ubuntu: apt-get install pkg-config libuv1-dev; Fedora: "
            "dnf install pkgconf libuv-devel), then build again")


class BuildFailure(SystemExit):
    """Stop the build with one line on stderr and no traceback."""

    def __init__(self, msg):
        super().__init__("error: " + msg)


def pkg_config_libuv():
    """libuv's compile and link flags as pkg-config gives them, all of
    them (not only -I/-L/-l: a libuv built with -pthread or a -D needs
    those too), split as the shell would."""
    if shutil.which("pkg-config") is None:
        raise BuildFailure(NO_LIBUV)
    flags = []
    for what in ("--cflags", "--libs"):
        proc = subprocess.run(["pkg-config", what, "libuv"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildFailure(NO_LIBUV)
        flags.append(shlex.split(proc.stdout))
    return flags


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        # Sanitizer objects must never be mixed with plain ones.
        if os.environ.get("GR_SANITIZE"):
            self.build_temp = os.path.join(self.build_temp, "sanitize")

    def build_extensions(self):
        if sysconfig.get_config_var("Py_GIL_DISABLED"):
            raise BuildFailure(
                "goroutine does not support free-threaded CPython yet: its "
                "goroutines carry thread states between OS threads, which "
                "the free-threaded allocator forbids; use a regular (GIL) "
                "build of CPython 3.10-3.15")
        cflags, libs = pkg_config_libuv()
        for ext in self.extensions:
            ext.extra_compile_args = cflags + ext.extra_compile_args
            ext.extra_link_args = ext.extra_link_args + libs
        # setuptools does not compile .S by default; gcc and clang do.
        self.compiler.src_extensions.append(".S")
        super().build_extensions()


# -fvisibility=hidden: only PyInit__core (PyMODINIT_FUNC marks it default)
# leaves _core.so, so calls between the core's own files bind directly
# instead of through the PLT.
cflags = ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-Wno-missing-field-initializers", "-fno-strict-aliasing",
          "-fvisibility=hidden"]
ldflags = ["-pthread"]
macros = []
if os.environ.get("GR_WERROR", "") not in ("", "0"):
    cflags.append("-Werror")
sanitize = os.environ.get("GR_SANITIZE")
if sanitize:
    cflags += ["-fsanitize=" + sanitize, "-fno-omit-frame-pointer", "-O1",
               "-g"]
    if "undefined" in sanitize.split(","):
        cflags.append("-fno-sanitize-recover=undefined")
    ldflags += ["-fsanitize=" + sanitize]
    macros.append(("GR_SANITIZE", "1"))
else:
    cflags += ["-O2", "-g"]

sources = sorted(glob.glob("src/*.c")) + ["src/switch.S"]
setup(
    ext_modules=[Extension(
        "goroutine._core",
        sources=sources,
        depends=glob.glob("src/*.h") + glob.glob("src/switch_*.S"),
        include_dirs=["src"],
        define_macros=macros,
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )],
    cmdclass={"build_ext": BuildExt},
)
