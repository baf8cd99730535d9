"""What pystate.c guarantees about a goroutine's thread state, checked
through CPython's own C API (ctypes.pythonapi):

- PyGILState_GetThisThreadState() inside a goroutine is the goroutine's
  thread state (so PyGILState_Ensure in a C callback finds it), also after
  the goroutine parked and resumed, possibly on another M.  3.15 keeps this
  binding in a C thread-local that pystate.c cannot reach; CPython rebinds
  it on attach because leave clears the thread state's bound_gilstate bit.
- A plain thread's binding is its own again after goroutines ran.
"""
import ctypes
import threading
import time

from goroutine import chan, go, runtime

api = ctypes.pythonapi
api.PyGILState_GetThisThreadState.restype = ctypes.c_void_p
api.PyThreadState_Get.restype = ctypes.c_void_p
api.PyGILState_Check.restype = ctypes.c_int


def bound_to_current():
    return (api.PyGILState_GetThisThreadState() == api.PyThreadState_Get()
            and api.PyGILState_Check() == 1)


def test_pygilstate_finds_the_goroutines_thread_state_across_migrations():
    n, rounds = 8, 50
    out = chan(n)

    def g():
        bad = 0
        me = api.PyThreadState_Get()
        for i in range(rounds):
            bad += not bound_to_current()
            if i % 2:
                time.sleep(0.0005)      # parks: resumes on any M
            else:
                runtime.gosched()
            # still our own thread state, wherever we run now
            bad += api.PyThreadState_Get() != me
        out.send(bad)
    for _ in range(n):
        go(g)
    assert [out.recv() for _ in range(n)] == [0] * n


def test_a_threads_binding_is_its_own_after_goroutines_ran():
    done = chan()
    go(lambda: done.close())
    done.recv()
    assert bound_to_current()
    res = []
    t = threading.Thread(target=lambda: res.append(bound_to_current()))
    t.start()
    t.join()
    assert res == [True]
