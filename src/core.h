/*
 * core.h: the types shared between the files of goroutine._core, and the
 * internal API between them.
 *
 * Every concept file (sched.c, chan.c, gomap.c, ...) exposes at most:
 *   - gr_<concept>_exec(module): adds its types and functions to the module
 *     (called once per module object by module.c's Py_mod_exec slot);
 *   - gr_<concept>_<verb>(...): what other files call.
 * Runtime structs keep Go's names (g, m, p, sudog, hchan) so each file reads
 * side by side with its Go twin.
 *
 * Who may touch what, in one place (each file's header says more):
 *   - sched.lock guards the global run queue, the idle M and P lists and
 *     the allg list.  Never call Python or take the GIL while holding it.
 *   - hchan.lock guards one channel.  Lock order: channels by address, then
 *     sched.lock.  Never call Python, take the GIL or ready a G under it
 *     (collect, unlock, then wake).
 *   - A P's run queue has one producer at a time (Go's runqput is
 *     owner-only): every put happens with the GIL held by the thread whose
 *     M owns the P; gets and steals are lock-free CASes on the head.
 */
#ifndef GR_CORE_H
#define GR_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* ---- process-wide objects (module.c) -------------------------------- */

/*
 * The scheduler owns OS threads, so the runtime is a process-wide singleton
 * anyway; the exception classes live here as well so that GIL-holding code
 * in any file can raise them without a module lookup (PyType_GetModuleByDef
 * does not exist on 3.10).  Filled on the first exec, never freed: threads
 * that use them can outlive the module object.
 */
typedef struct {
    PyObject *Panic;        /* goroutine.Panic(Exception) */
    PyObject *Deadlock;     /* goroutine.Deadlock(RuntimeError) */
    PyObject *Goexit;       /* _core.Goexit(BaseException): runtime.goexit */
    PyObject *default_;     /* the `default` select case sentinel */
    PyTypeObject *chan_type;
} gr_globals_t;

extern gr_globals_t gr_globals;

/* Raise goroutine.Panic(msg) with Go's wording; returns NULL. */
PyObject *gr_panic(const char *msg);

/* ---- context switch (switch_*.S, gstack.c) -------------------------- */

#include "switch.h"

typedef struct {
    char *lo;               /* lowest usable address (above the guard) */
    size_t size;            /* usable bytes */
    char *map;              /* mapping start (guard included), NULL if slab */
    void *asan_fake;        /* ASan fake-stack handle across a switch */
    void *tsan_fiber;       /* TSan fiber of the goroutine on it, or NULL */
    unsigned valgrind_id;   /* VALGRIND_STACK_REGISTER id */
    int guard;              /* what guards it (gstack.c GUARD_*) */
} gr_stack;

int gr_stack_alloc(gr_stack *st);
void gr_stack_free(gr_stack *st);
void gr_ctx_make(gr_ctx *ctx, gr_stack *st, void (*entry)(void *), void *arg,
                 uint64_t goid);
void gr_ctx_done(gr_stack *st);
void gr_stack_check(gr_stack *st, uint64_t goid, PyThreadState *ts);
size_t gr_stack_size(void);
size_t gr_stack_full_size(void);
const char *gr_stack_config_error(void);
void gr_stack_thread_init(void *m);
void gr_stack_overflow_report(uint64_t goid, PyThreadState *ts);

/* Fiber annotations for the sanitizers, around every gr_ctx_switch
 * (no-ops in plain builds): ASan's fake stacks, TSan's fibers. */
void gr_switch_annotate_begin(void **fake, const char *lo, size_t size,
                              void *fiber);
void gr_switch_annotate_end(void *fake);
void *gr_switch_fiber_self(void);
/* A mutex held by a parking goroutine and released by its gr_park
 * unlock function on g0 changes hands across the switch: out on the
 * goroutine right before gr_park, in at the start of the unlock
 * function.  For TSan; no-ops otherwise. */
void gr_lock_handoff_out(pthread_mutex_t *mu);
void gr_lock_handoff_in(pthread_mutex_t *mu);

/* ---- waiters (waiter.c) --------------------------------------------- */

typedef struct gr_g gr_g;
typedef struct gr_m gr_m;
typedef struct gr_p gr_p;
typedef struct hchan hchan;

enum { GR_WAIT_G = 1, GR_WAIT_THREAD = 2, GR_WAIT_ASYNC = 3 };

/* A per-waiter semaphore for a plain OS thread. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int posted;
} gr_sema;

/*
 * One blocked party: a goroutine, a plain thread or an asyncio task.  A
 * select puts one sudog per case on the channels' queues, all pointing at
 * the same waiter; whoever completes one of them (or cancels the wait) must
 * first win `claimed` 0 -> 1.  Losers leave the waiter alone: exactly one
 * case fires, and a cancel that loses means the operation completed.
 */
typedef struct gr_waiter {
    int kind;                   /* GR_WAIT_* */
    atomic_int claimed;         /* 0 open, 1 taken by a waker or a cancel */
    struct gr_sudog *fired;     /* the sudog that completed, set by winner */
    gr_g *g;                    /* GR_WAIT_G: the parked goroutine */
    gr_sema *sema;              /* GR_WAIT_THREAD */
    PyObject *async_wake;       /* GR_WAIT_ASYNC: callable(loop-threadsafe) */
    unsigned forkgen;           /* GR_WAIT_THREAD: gr_forkgen when made */
} gr_waiter;

/* Bumped in a forked child: a thread waiter made before it belongs to a
 * thread that does not exist there, and can no longer be claimed. */
extern atomic_uint gr_forkgen;

/* A waiter's place on one channel queue (Go's sudog). */
typedef struct gr_sudog {
    struct gr_sudog *next;      /* queue links, under the channel's lock */
    struct gr_sudog *prev;
    gr_waiter *w;
    hchan *c;
    PyObject *elem;             /* send: the value (borrowed from the
                                   sender, who keeps it alive); recv: the
                                   value handed over (new reference) */
    int caseidx;                /* select case index */
    bool queued;                /* on c's sendq/recvq (under c's lock) */
    bool success;               /* completed by a peer (false: by close) */
    bool isselect;
} gr_sudog;

void gr_sema_init(gr_sema *s);
void gr_sema_destroy(gr_sema *s);
void gr_sema_post(gr_sema *s);
bool gr_sema_wait(gr_sema *s, int64_t timeout_ns);

bool gr_waiter_claim(gr_waiter *w);
void gr_waiter_wake(gr_waiter *w);
void gr_waiter_init_thread(gr_waiter *w, gr_sema *sema);
void gr_waiter_fini_thread(gr_waiter *w);
gr_g *gr_waiter_init_current(gr_waiter *w, gr_sema *sema);
/* Block the calling thread (not a goroutine) until `w` fires.  GIL held on
 * entry and exit.  cancel(arg) must unlink the waiter's sudogs once a
 * cancel has won the claim.  Returns 0 when fired, -1 with an exception
 * (KeyboardInterrupt, Deadlock) when the operation left no trace. */
int gr_waiter_block_thread(gr_waiter *w, void (*cancel)(void *), void *arg,
                           const char *reason);

/* ---- scheduler (sched.c) -------------------------------------------- */

/* The goroutine running on this OS thread, or NULL on a plain thread. */
gr_g *gr_getg(void);
uint64_t gr_g_id(gr_g *g);
/* For the fault handler (sched.c; async-signal-safe reads). */
gr_g *gr_m_curg(void *m);
gr_stack *gr_g_stack(gr_g *g);
PyThreadState *gr_g_tstate(gr_g *g);
/* A goroutine of the parent seen in a forked child: it does not exist. */
bool gr_g_ghost(gr_g *g);
/* Park the current goroutine.  The GIL is held on entry and exit (possibly
 * on another OS thread).  unlockf(arg) runs on g0 after the goroutine's
 * stack and thread state are fully off the CPU: release the lock that
 * publishes the waiter there. */
void gr_park(void (*unlockf)(void *), void *arg, const char *reason);
/* Make a parked goroutine runnable.  Any thread; GIL held or not. */
void gr_ready(gr_g *g);
uint32_t gr_fastrand(void);
int gr_sched_exec(PyObject *module);
/* Start fn(*args) as a goroutine (GIL held); new ref to None or NULL. */
PyObject *gr_go(PyObject *fn, PyObject *args);
/* The interpreter is exiting: runtime threads must not touch Python. */
bool gr_sched_exiting(void);
bool gr_sched_stopped(void);

/* ---- timers (timer.c) ----------------------------------------------- */

int gr_timer_exec(PyObject *module);
int gr_sync_exec(PyObject *module);
int gr_gomap_exec(PyObject *module);
/* Park the goroutine / block the thread for `seconds`; 0 or -1. */
int gr_sleep(double seconds);

/* Deadlock bookkeeping for plain threads blocked in the runtime (GIL
 * held): note_blocked(+1/-1) around a wait; deadlocked() asks whether
 * nothing can ever end it; epoch() changes whenever a G is made runnable. */
int gr_sched_note_blocked(int delta);
bool gr_sched_deadlocked(void);
uint64_t gr_sched_epoch(void);
/* Timers that can still fire (timer.c keeps the count). */
extern atomic_long gr_timers_pending;
long gr_timer_pending(void);
/* At exit: wait until the timer thread is done delivering under the GIL. */
void gr_timer_fence(void);
/* fork (sched.c's pthread_atfork handlers call these; see there). */
void gr_timer_fork_prepare(void);
void gr_timer_fork_parent(void);
void gr_timer_fork_child(void);
int gr_timer_after_fork(void);      /* GIL held: restart the loop thread */

/* ---- thread states (pystate.c: the only file with CPython internals) -- */

PyThreadState *gr_pystate_new(void);
void gr_pystate_list(PyThreadState *ts);
void gr_pystate_unlist(PyThreadState *ts);
void gr_pystate_delete(PyThreadState *ts);
void gr_pystate_after_fork(bool goroutine_forked);
void gr_pystate_recycle(PyThreadState *ts);
void gr_pystate_start_hooks(void);
void gr_pystate_enter(PyThreadState *ts, PyThreadState *mts);
void gr_pystate_leave(PyThreadState *ts, PyThreadState *mts);
void gr_pystate_fit_stack(PyThreadState *ts, char *lo, size_t size,
                          int *fit_limit);
void gr_pystate_dump(int fd, PyThreadState *ts);
void gr_pystate_refit(PyThreadState *ts, size_t stack_bytes, int *fit_limit);
bool gr_pystate_attached(PyThreadState *ts);
PyObject *gr_pystate_weakref_get(PyObject *ref);
size_t gr_pystate_rlock_size(void);
bool gr_pystate_rlock_owned(PyObject *rlock);
bool gr_pystate_finalizing(void);

/* The value of an exact int that fits in one digit (|v| < 2^30), read
 * inline: the map's key encoder calls this on every int key, where a call
 * to PyLong_AsLongLongAndOverflow measured 4% of m[k] = v; m[k].  The one
 * version difference outside pystate.c, because it must inline: 3.12 made
 * the layout opaque behind PyUnstable_Long_*.  Returns false for any
 * other int (the caller falls back to the general API). */
static inline bool
gr_pystate_small_int(PyObject *v, int64_t *out)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (!PyUnstable_Long_IsCompact((PyLongObject *)v)) {
        return false;
    }
    *out = PyUnstable_Long_CompactValue((PyLongObject *)v);
#else
    Py_ssize_t size = Py_SIZE(v);
    if (size < -1 || size > 1) {
        return false;
    }
    /* ob_digit[0] is undefined when the size is 0 */
    *out = size == 0 ? 0 : size * (int64_t)((PyLongObject *)v)->ob_digit[0];
#endif
    return true;
}

/* ---- channels and select (chan.c, select.c) ------------------------- */

int gr_chan_exec(PyObject *module);
int gr_select_exec(PyObject *module);

/* The hchan behind a chan object, or NULL for nilchan.  `dir` is the
 * direction the object allows (GR_DIR_*). */
enum { GR_DIR_BOTH = 0, GR_DIR_SEND = 1, GR_DIR_RECV = 2 };
int gr_chan_unwrap(PyObject *obj, hchan **c, int *dir);

/* Lock, enqueue, dequeue and the one-shot operations selectgo needs. */
void gr_chan_lock(hchan *c);
void gr_chan_unlock(hchan *c);
/* gr_lock_handoff_out/in for c's lock (select parks holding several). */
void gr_chan_lock_handoff_out(hchan *c);
void gr_chan_lock_handoff_in(hchan *c);
typedef struct {
    gr_waiter *wake[2];         /* at most one waiter to wake after unlock */
    PyObject *decref;           /* a reference to drop after unlock */
} gr_chan_after;
/* Try to complete a send/recv on a locked channel without blocking.
 * Returns 1 done, 0 would block, -1 closed (send: panic; recv: zero value).
 * recv stores a new reference in *out. */
int gr_chan_trysend(hchan *c, PyObject *v, gr_chan_after *after);
int gr_chan_tryrecv(hchan *c, PyObject **out, gr_chan_after *after);
void gr_chan_enqueue(hchan *c, gr_sudog *sg, bool send);
void gr_chan_dequeue_sudog(hchan *c, gr_sudog *sg);
void gr_chan_after_run(gr_chan_after *after);
/* GIL held: make c (a fresh channel) the channel of `timer`, which it then
 * keeps alive; len()/cap() of c read 0 (Go 1.23). */
void gr_chan_set_timer(hchan *c, PyObject *timer);

#endif /* GR_CORE_H */
