"""docs/api.md and the docstrings keep up with the public names."""
import inspect
import pathlib

import goroutine
from goroutine import (context, errgroup, errors, interp, net, runtime,
                       sync, time)

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODULES = {"goroutine": goroutine, "context": context, "sync": sync,
           "time": time, "runtime": runtime, "errgroup": errgroup,
           "errors": errors, "net": net, "interp": interp}


def public_names():
    for modname, mod in MODULES.items():
        for name in mod.__all__:
            yield modname, name, getattr(mod, name)


def test_every_public_name_is_in_the_api_reference():
    api = (ROOT / "docs" / "api.md").read_text()
    missing = [f"{m}.{n}" for m, n, _ in public_names()
               if n not in api and n.lower() not in api.lower()]
    assert missing == []


def test_every_public_callable_and_class_has_a_docstring():
    undocumented = []
    for m, n, obj in public_names():
        if inspect.ismodule(obj) or not (callable(obj) or inspect.isclass(obj)):
            continue
        if not (getattr(obj, "__doc__", None) or "").strip():
            undocumented.append(f"{m}.{n}")
    assert undocumented == []


def test_every_public_method_of_the_core_types_has_a_docstring():
    undocumented = []
    for cls in (goroutine.chan, goroutine.Map, sync.Mutex, sync.RWMutex,
                sync.WaitGroup, sync.Cond, sync.Sema, time.Timer,
                time.Ticker):
        for name, member in inspect.getmembers(cls):
            if name.startswith("_") or not callable(member):
                continue
            if not (member.__doc__ or "").strip():
                undocumented.append(f"{cls.__name__}.{name}")
    assert undocumented == []


def test_the_core_stub_names_exactly_what_the_core_exports():
    import ast
    from goroutine import _core
    pyi = pathlib.Path(goroutine.__file__).with_name("_core.pyi")
    tree = ast.parse(pyi.read_text())
    stub = {n.name for n in tree.body
            if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    stub |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    real = {n for n in dir(_core) if not n.startswith("__")}
    assert real - stub == set()
    assert stub - real <= {"_T"}
