"""Run a script under valgrind memcheck and fail on any error whose stack
passes through goroutine's C core.  CPython itself reports known false
positives under memcheck (an int built from os.urandom bytes at import
time); suppressing those broadly would hide real errors, so we filter by
where an error happens instead."""
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET


def main(argv):
    script = argv[1]
    with tempfile.TemporaryDirectory() as d:
        xml = os.path.join(d, "vg.xml")
        env = dict(os.environ, PYTHONMALLOC="malloc")
        r = subprocess.run(["valgrind", "--xml=yes", f"--xml-file={xml}",
                            "--leak-check=no", sys.executable, script],
                           env=env, capture_output=True, text=True,
                           timeout=1200)
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            return 1
        errors = ET.parse(xml).getroot().findall("error")
    # Leak records at exit are by design: runtime threads and parked
    # goroutines are abandoned when the interpreter exits, as in Go.
    errors = [e for e in errors
              if not (e.findtext("kind") or "").startswith("Leak_")]
    ours = []
    for e in errors:
        objs = [f.findtext("obj") or "" for f in e.iter("frame")]
        if any("goroutine/_core" in o or "_core.cpython" in o for o in objs):
            ours.append(e)
    for e in ours:
        print(e.findtext("kind"), e.findtext("what"))
        for f in e.iter("frame"):
            print("   ", f.findtext("fn"), f.findtext("file"), f.findtext("line"))
    print(f"valgrind: {len(errors)} memory-error reports, {len(ours)} in "
          "goroutine's core")
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
