"""Check that the C core's files layer with no cycle.

The graph comes from the object files, not from reading the source: for
each src/*.o, `nm` lists the symbols it defines and the ones it uses; file
A depends on file B when A uses a symbol that B defines.  Every file must
use only files below it (docs/design.md, "Layout"), so the graph must be
acyclic.  On success this prints the layer order, bottom first, with each
file's direct dependencies; on a cycle it prints the cycle's files and the
symbols that make each edge, and exits 1.

    python tools/check_layers.py [OBJDIR]

OBJDIR defaults to the src/ directory of this interpreter's setuptools
build tree (build/temp.<platform>-<cache_tag>/src), which `make build`
fills.
"""
import os
import subprocess
import sys
import sysconfig


def default_objdir():
    tag = "%s-%s" % (sysconfig.get_platform(), sys.implementation.cache_tag)
    return os.path.join("build", "temp." + tag, "src")


def symbols(path):
    """(defined, used) global symbol names of one object file."""
    out = subprocess.run(["nm", "-P", path], check=True, capture_output=True,
                         text=True).stdout
    defined, used = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            used.add(name)
        elif kind.isupper():        # global definition (T, D, B, R, ...)
            defined.add(name)
    return defined, used


def graph(objdir):
    """{file: {dependency: [symbols]}} over the object files in objdir."""
    objs = sorted(f for f in os.listdir(objdir) if f.endswith(".o"))
    if not objs:
        raise SystemExit("check_layers: no object files in %s (run make "
                         "build first)" % objdir)
    defs, uses = {}, {}
    for f in objs:
        name = f[:-2]
        d, u = symbols(os.path.join(objdir, f))
        defs[name], uses[name] = d, u
    owner = {}
    for name, d in defs.items():
        for s in d:
            owner[s] = name
    deps = {name: {} for name in defs}
    for name, u in uses.items():
        for s in sorted(u):
            o = owner.get(s)
            if o is not None and o != name:
                deps[name].setdefault(o, []).append(s)
    return deps


def find_cycle(deps):
    """One cycle as a list of files [a, b, ..., a], or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = {n: WHITE for n in deps}
    stack = []

    def visit(n):
        color[n] = GREY
        stack.append(n)
        for m in sorted(deps[n]):
            if color[m] == GREY:
                return stack[stack.index(m):] + [m]
            if color[m] == WHITE:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        color[n] = BLACK
        return None

    for n in sorted(deps):
        if color[n] == WHITE:
            c = visit(n)
            if c:
                return c
    return None


def layers(deps):
    """Layer number per file: 0 uses no other file; otherwise one above
    its highest dependency."""
    level = {}

    def lv(n):
        if n not in level:
            level[n] = 1 + max((lv(m) for m in deps[n]), default=-1)
        return level[n]

    for n in deps:
        lv(n)
    return level


def main(argv):
    objdir = argv[1] if len(argv) > 1 else default_objdir()
    if not os.path.isdir(objdir):
        print("check_layers: %s does not exist (run make build first)"
              % objdir, file=sys.stderr)
        return 2
    deps = graph(objdir)
    cycle = find_cycle(deps)
    if cycle:
        print("check_layers: the files of src/ form a cycle: "
              + " -> ".join(cycle), file=sys.stderr)
        for a, b in zip(cycle, cycle[1:]):
            print("  %s uses %s: %s" % (a, b, ", ".join(deps[a][b])),
                  file=sys.stderr)
        return 1
    level = layers(deps)
    print("check_layers: no cycle; layers, bottom first:")
    for n in sorted(deps, key=lambda n: (level[n], n)):
        print("  %d  %-16s uses %s" % (level[n], n,
                                       ", ".join(sorted(deps[n])) or "-"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
