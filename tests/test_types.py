"""Every type the C core defines is immutable and named where a user
reaches it, so repr(), error messages and pickling agree."""
import pickle

import pytest

import goroutine
from goroutine import _core, context, errgroup, net, runtime, sync, time

Py_TPFLAGS_IMMUTABLETYPE = 1 << 8

# Where a user reaches things, most public first; _core last.
MODULES = [goroutine, sync, time, context, errgroup, runtime, net, _core]


def core_types():
    """Every type made by the C core: the classes in goroutine._core (the
    Python classes of the package only subclass these) and the types of
    the objects its functions return without naming them."""
    found = {v for v in vars(_core).values() if isinstance(v, type)}
    m = goroutine.Map({1: 2})
    found |= {type(m.keys()), type(m.values()), type(m.items()),
              type(iter(m)), type(iter(m.keys())), type(iter(m.items()))}
    found.discard(object)
    return sorted(found, key=lambda t: t.__qualname__)


def public_name(t):
    """The dotted name of t in the most public module that has it."""
    for mod in MODULES:
        for name, v in vars(mod).items():
            if v is t:
                return f"{mod.__name__}.{name}"
    return None


def test_core_types_are_found():
    names = {t.__qualname__ for t in core_types()}
    assert {"chan", "Map", "Mutex", "RWMutex", "WaitGroup", "Cond", "Sema",
            "_timer", "Panic", "Deadlock", "Goexit",
            "map_keys", "map_values", "map_items",
            "map_iterator"} <= names


@pytest.mark.parametrize("t", core_types(), ids=lambda t: t.__qualname__)
def test_every_core_type_is_immutable(t):
    assert t.__flags__ & Py_TPFLAGS_IMMUTABLETYPE, t
    with pytest.raises(TypeError, match="immutable type"):
        t.x = 1
    assert not hasattr(t, "x")


@pytest.mark.parametrize("t", core_types(), ids=lambda t: t.__qualname__)
def test_every_core_type_is_named_where_users_reach_it(t):
    want = public_name(t)
    if want is None:
        # A type only reached through its objects (a Map view or
        # iterator) is named in its map's module, as dict_keys is in
        # builtins.
        want = f"{goroutine.Map.__module__}.{t.__qualname__}"
    assert f"{t.__module__}.{t.__qualname__}" == want


def test_mutex_of_core_rejects_new_attributes():
    with pytest.raises(TypeError):
        _core.Mutex.x = 1


def test_python_subclasses_of_core_types_stay_open():
    # Immutability is the C type's own: sync.Mutex (a Python class over
    # _core.Mutex) and user subclasses are ordinary classes.
    class MyPanic(goroutine.Panic):
        pass
    MyPanic.x = 1
    assert MyPanic(3).arg == 3 and MyPanic.x == 1
    assert sync.Mutex.__mro__[1] is _core.Mutex


def test_panic_pickles_by_its_public_name():
    p = pickle.loads(pickle.dumps(goroutine.Panic("boom")))
    assert type(p) is goroutine.Panic and p.arg == "boom"


def test_panic_arg_is_a_readonly_attribute_of_the_class():
    p = goroutine.Panic(1)
    with pytest.raises(AttributeError):
        p.arg = 2
    assert "arg" in vars(goroutine.Panic)


def test_exceptions_take_weak_references_as_before():
    # The classes PyErr_NewException made had a weak reference list
    # (type() adds one); the spec-made ones keep it, for subclasses too.
    import gc
    import weakref

    class MyPanic(goroutine.Panic):
        pass
    for cls in (goroutine.Panic, goroutine.Deadlock, _core.Goexit, MyPanic):
        e = cls("x")
        called = []
        r = weakref.ref(e, called.append)
        assert r() is e
        del e
        gc.collect()
        assert r() is None and called == [r]
