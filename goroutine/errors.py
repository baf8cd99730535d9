"""goroutine.errors: Go's errors package over Python exceptions, with
pygolang's names (New, Is, Unwrap) and this package's (new, is_, unwrap).

An error is an exception instance.  An error's chain is what Go's Unwrap
follows, taken from both worlds as pygolang does: the error's own
.Unwrap() (which may return one error, or a list of them as Go 1.20's
Unwrap() []error), then its __cause__ (`raise ... from err`).  An
ExceptionGroup unwraps to its exceptions.
"""
from typing import Optional as _Optional

__all__ = ["Error", "New", "Is", "Unwrap", "new", "is_", "unwrap"]


class Error(Exception):
    """What New(text) returns: Go's errorString.  str(err) and err.Error()
    are the text; every New makes a distinct error (Is matches the same
    object only), as in Go."""

    def Error(self) -> str:
        return str(self)


def New(text: str) -> Error:
    """A new error whose message is text."""
    if not isinstance(text, str):
        raise TypeError("errors.New: text must be str, not %r"
                        % type(text).__name__)
    return Error(text)


def _check(what, err, name="err"):
    if err is not None and not isinstance(err, BaseException):
        raise TypeError("errors.%s: %s must be an exception or None, not %r"
                        % (what, name, type(err).__name__))


def _wrapped(err):
    """The errors err wraps directly, in Go's order (its Unwrap first)."""
    out: list[BaseException] = []
    unwrap = getattr(err, "Unwrap", None)
    if callable(unwrap):
        w = unwrap()
        if isinstance(w, (list, tuple)):
            out.extend(e for e in w if e is not None)
        elif w is not None:
            out.append(w)
    excs = getattr(err, "exceptions", None)
    if isinstance(excs, tuple) and isinstance(err, BaseException):
        out.extend(excs)
    cause = getattr(err, "__cause__", None)
    if cause is not None:
        out.append(cause)
    return out


def Unwrap(err):
    """The error err wraps (its .Unwrap(), else its __cause__), or None.
    As in Go, an error wrapping several (a list from Unwrap, an
    ExceptionGroup) unwraps to None here; Is still searches them all."""
    _check("Unwrap", err)
    if err is None:
        return None
    unwrap = getattr(err, "Unwrap", None)
    if callable(unwrap):
        w = unwrap()
        if isinstance(w, BaseException):
            return w
        if w is not None:
            return None
    return err.__cause__


def Is(err: _Optional[BaseException],
       target: _Optional[BaseException]) -> bool:
    """Whether any error in err's chain (depth first: err, what it wraps,
    ...) matches target: the same type and ==, or target's own
    err.Is(target) says so.  Is(None, None) is True, as in Go."""
    _check("Is", err)
    _check("Is", target, "target")
    if target is None or err is None:
        return err is target
    stack, seen = [err], set()
    while stack:
        e = stack.pop()
        if id(e) in seen:       # a cycle through __cause__
            continue
        seen.add(id(e))
        if type(e) is type(target) and e == target:
            return True
        is_ = getattr(e, "Is", None)
        if callable(is_) and is_(target):
            return True
        stack.extend(reversed(_wrapped(e)))
    return False


new = New
is_ = Is
unwrap = Unwrap
