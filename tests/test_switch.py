"""The assembly context switch on its own: natively, and for AArch64 under
qemu-user when a cross compiler and qemu are installed."""
import platform
import shutil
import subprocess

import pytest

from conftest import ROOT_DIR

SRC = ROOT_DIR / "src"
TEST = ROOT_DIR / "tests" / "c" / "test_switch.c"
# switch.S picks the architecture by the compiler's macros, as the build
# does: the cross build below checks that choice too.
ASM = {"x86_64": "switch.S", "aarch64": "switch.S"}


def build_and_run(cc, arch, runner, tmp_path):
    exe = tmp_path / f"switch-{arch}"
    subprocess.run([cc, "-O2", "-static", "-I", str(SRC), str(TEST),
                    str(SRC / ASM[arch]), "-o", str(exe), "-lm"],
                   check=True, capture_output=True, text=True)
    r = subprocess.run(runner + [str(exe)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("switch ok")


def test_native_switch_keeps_registers_and_fp_control(tmp_path):
    arch = platform.machine()
    if arch not in ASM or shutil.which("cc") is None:
        pytest.skip(f"no compiler or no switch for {arch}")
    build_and_run("cc", arch, [], tmp_path)


def test_aarch64_switch_under_qemu(tmp_path):
    cc = shutil.which("aarch64-linux-gnu-gcc")
    qemu = shutil.which("qemu-aarch64")
    if platform.machine() == "aarch64" or not (cc and qemu):
        pytest.skip("needs aarch64-linux-gnu-gcc and qemu-aarch64 "
                    "(apt-get install gcc-aarch64-linux-gnu qemu-user)")
    build_and_run(cc, "aarch64", [qemu], tmp_path)
