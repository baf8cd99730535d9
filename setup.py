"""Build of goroutine._core: one C extension from src/, linked against libuv.

Environment knobs (the Makefile sets them; a plain `pip install .` needs none):
  GR_SANITIZE=address,undefined   build with those sanitizers (make test-asan)
  GR_SANITIZE=thread              ThreadSanitizer build (make test-tsan)
  GR_WERROR=1                     turn warnings into errors (CI)
"""
import glob
import os
import platform
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def fail(msg):
    sys.stderr.write("\nerror: " + msg + "\n\n")
    sys.exit(1)


if sysconfig.get_config_var("Py_GIL_DISABLED"):
    fail("goroutine does not support free-threaded CPython (%s) yet: its "
         "goroutines carry thread states between OS threads, which the "
         "free-threaded allocator forbids. Use a regular (GIL) build of "
         "CPython 3.10-3.15." % sys.version.split()[0])


def pkg_config(*args):
    if shutil.which("pkg-config") is None:
        return None
    try:
        out = subprocess.run(["pkg-config", *args, "libuv"], check=True,
                             capture_output=True, text=True).stdout
    except subprocess.CalledProcessError:
        return None
    return out.split()


def libuv():
    cflags, libs = pkg_config("--cflags"), pkg_config("--libs")
    if cflags is None or libs is None:
        fail("libuv development files were not found (pkg-config libuv). "
             "Install them: Debian/Ubuntu: apt-get install libuv1-dev "
             "pkg-config; Fedora: dnf install libuv-devel; macOS: brew "
             "install libuv pkg-config.")
    include = [f[2:] for f in cflags if f.startswith("-I")]
    libdirs = [f[2:] for f in libs if f.startswith("-L")]
    names = [f[2:] for f in libs if f.startswith("-l")]
    return include, libdirs, names


def switch_source():
    """The context switch: hand-written assembly where we have it."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return ["src/switch_x86_64.S"], []
    if machine in ("aarch64", "arm64"):
        return ["src/switch_aarch64.S"], []
    fail("goroutine has no context switch for %s yet (x86_64 and aarch64 "
         "are supported)" % platform.machine())


class BuildExt(build_ext):
    def build_extensions(self):
        # setuptools does not compile .S by default; gcc and clang do.
        self.compiler.src_extensions.append(".S")
        super().build_extensions()

    def finalize_options(self):
        super().finalize_options()
        # Sanitizer objects must never be mixed with plain ones.
        if os.environ.get("GR_SANITIZE"):
            self.build_temp = os.path.join(self.build_temp, "sanitize")


include, libdirs, names = libuv()
asm, macros = switch_source()
# -fvisibility=hidden: only PyInit__core (PyMODINIT_FUNC marks it default)
# leaves _core.so, so calls between the core's own files bind directly
# instead of through the PLT.
cflags = ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-Wno-missing-field-initializers", "-fno-strict-aliasing",
          "-fvisibility=hidden"]
ldflags = ["-pthread"]
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

sources = sorted(glob.glob("src/*.c")) + asm
setup(
    ext_modules=[Extension(
        "goroutine._core",
        sources=sources,
        depends=glob.glob("src/*.h"),
        include_dirs=["src"] + include,
        library_dirs=libdirs,
        libraries=names,
        define_macros=macros,
        extra_compile_args=cflags,
        extra_link_args=ldflags,
    )],
    cmdclass={"build_ext": BuildExt},
)
