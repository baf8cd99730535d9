"""python -m goroutine: what a bug report needs to say about this install.

Prints the distribution and its version, the CPython running it, the
scheduler's GOMAXPROCS, the libuv the extension is linked with (its version
and the file it was loaded from: the copy bundled in a wheel or the system's)
and what the runtime does not do yet.
"""
import ctypes
import os
import platform
import sys

import goroutine
from goroutine import _core, runtime


def libuv_version():
    """libuv's own version string, asked of the libuv that _core loaded:
    dlsym through _core's handle searches _core's dependencies, so this is
    the copy really in use, bundled or not."""
    try:
        fn = ctypes.CDLL(_core.__file__).uv_version_string
    except (OSError, AttributeError):
        return "unknown"
    fn.restype = ctypes.c_char_p
    return fn().decode()


def libuv_file():
    """The path of the libuv shared object mapped into this process."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(None, 5)[-1].strip()
                if os.path.basename(path).startswith("libuv"):
                    return path
    except OSError:
        pass
    return "?"


def report():
    procs = runtime.gomaxprocs()
    env = os.environ.get("GOMAXPROCS")
    lines = [
        "goroutine-runtime %s (import goroutine: %s)"
        % (goroutine.__version__, os.path.dirname(goroutine.__file__)),
        "CPython %s on %s %s (%s)"
        % (platform.python_version(), platform.system(), platform.machine(),
           " ".join(platform.libc_ver()) or "libc unknown"),
        "GOMAXPROCS: %d (CPUs: %d%s)"
        % (procs, runtime.num_cpu(),
           "; GOMAXPROCS=%s in the environment" % env if env else ""),
        "libuv: %s (%s)" % (libuv_version(), libuv_file()),
        "netpoller: epoll, in the scheduler (goroutine.net parks "
        "goroutines; other blocking I/O hands its P to another thread)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
    sys.exit(0)
