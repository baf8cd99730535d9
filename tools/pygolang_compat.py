"""Run pygolang's own test files against goroutine, with `import golang`
mapped to this package (tools/pygolang_shim/golang), and print the
pass/fail count per file: the measure of "pygolang code runs with an
import change" (docs/coming-from.md).

    python tools/pygolang_compat.py PYGOLANG_SOURCE [-v]

PYGOLANG_SOURCE is a checkout of https://lab.nexedi.com/nexedi/pygolang
(or its GitHub mirror navytux/pygolang): the directory holding golang/.
The test files need `six` and pytest.  Nothing of pygolang is imported or
built: its test files run in a temporary copy of the shim package.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ["golang_test.py", "sync_test.py", "time_test.py",
         "context_test.py", "errors_test.py"]


def main(argv):
    if len(argv) < 2 or not os.path.isdir(os.path.join(argv[1], "golang")):
        sys.exit(__doc__)
    src = os.path.join(argv[1], "golang")
    verbose = "-v" in argv[2:]
    total = [0, 0]
    with tempfile.TemporaryDirectory() as tmp:
        pkg = os.path.join(tmp, "golang")
        shutil.copytree(os.path.join(HERE, "pygolang_shim", "golang"), pkg)
        for f in FILES:
            shutil.copy(os.path.join(src, f), pkg)
        with open(os.path.join(tmp, "pytest.ini"), "w") as ini:
            # A test whose goroutines wait on the approximate waitBlocked
            # of the shim can hang: pytest-timeout (the test extras) ends it.
            ini.write("[pytest]\ntimeout = 60\n")
        for f in FILES:
            xml = os.path.join(tmp, f + ".xml")
            r = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p",
                 "no:cacheprovider", "-c", os.path.join(tmp, "pytest.ini"),
                 "--rootdir", tmp, "--junitxml", xml,
                 "-o", "faulthandler_timeout=120",
                 os.path.join("golang", f)],
                cwd=tmp, capture_output=True, text=True,
                env=dict(os.environ, PYTHONPATH=tmp))
            passed, failed, names = count(xml)
            total[0] += passed
            total[1] += failed
            print(f"{f:18} {passed:3} passed {failed:3} failed", flush=True)
            if verbose:
                for n in names:
                    print("    FAIL", n)
                if r.returncode not in (0, 1):
                    print(r.stdout[-3000:], r.stderr[-3000:])
    print(f"{'total':18} {total[0]:3} passed {total[1]:3} failed")


def count(xml):
    """(passed, failed-or-error, failing names) from a junit file; a file
    that could not even be collected counts as its one collection error."""
    if not os.path.exists(xml):
        return 0, 1, ["<no report>"]
    passed, failed, names = 0, 0, []
    for case in ET.parse(xml).iter("testcase"):
        if case.find("skipped") is not None:
            continue
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            names.append(case.get("name"))
        else:
            passed += 1
    return passed, failed, names


if __name__ == "__main__":
    main(sys.argv)
