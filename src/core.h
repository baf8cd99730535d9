/*
 * core.h: the types shared between the files of goroutine._core, and the
 * internal API between them.
 *
 * The files form layers, each using only files below it (docs/design.md,
 * "Layout"; `make check-layers` checks it from the object files), bottom
 * first: state.c, pystate.c, switch_*.S | gstack.c, gomap_*.c | sched.c |
 * waiter.c | chan.c, sync.c | select.c, timer.c | module.c.
 *
 * Every concept file (sched.c, chan.c, gomap.c, ...) exposes at most:
 *   - gr_<concept>_init(st): makes its part of the process state into the
 *     staging copy `st` (state.h), once per process, from module.c;
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

/* ---- process state, panic helper, shared counters (state.c) ------- */

#include "state.h"

/* ---- context switch (switch_*.S, gstack.c) -------------------------- */

#include "switch.h"

/* The stack a goroutine needs to keep a thread's recursion budget: the
 * main thread's and threading.Thread's here (gstack.c says why; pystate.c
 * scales the budget of smaller stacks). */
#define GR_STACK_FULL (8u * 1024u * 1024u)

/* Above every goroutine's C stack (gr_stack.size bytes from lo): room for
 * its thread state's first frame-data chunk (pystate.c), which then shares
 * the C stack's top page instead of costing a page of its own (3.11+; on
 * 3.10 it is untouched address space).  Not a whole number of pages, so
 * that the C stack's top and the chunk's start split one page
 * (docs/design.md, "Where a parked goroutine's memory goes"). */
#define GR_FRAME_AREA (65u * 1024u)

typedef struct {
    char *lo;               /* lowest usable address (above the guard) */
    size_t size;            /* usable C stack bytes (GR_FRAME_AREA above) */
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
const char *gr_stack_config_error(void);
/* For the fault handler, on the faulting M (async-signal-safe reads):
 * the stack of the goroutine running on m, its id and thread state, or
 * NULL when none runs there. */
typedef gr_stack *(*gr_stack_curg_fn)(void *m, uint64_t *goid,
                                      PyThreadState **ts);
void gr_stack_thread_init(void *m, gr_stack_curg_fn curg);

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

/* ---- waiting (waiter.c: Go's sudog and gopark, for every blocker) ---- */

typedef struct gr_g gr_g;
typedef struct gr_m gr_m;
typedef struct gr_p gr_p;
typedef struct hchan hchan;

enum { GR_WAIT_G = 1, GR_WAIT_THREAD = 2 };

/* A binary semaphore: a plain thread's wake-up, an idle M's park.  In
 * sema.c, a leaf: below both sched.c and waiter.c (which parks through
 * sched.c), so neither makes a cycle with the other. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int posted;
} gr_sema;

void gr_sema_init(gr_sema *s);
void gr_sema_destroy(gr_sema *s);
void gr_sema_post(gr_sema *s);
/* Wait for a post, at most timeout_ns (< 0: forever); true if posted. */
bool gr_sema_wait(gr_sema *s, int64_t timeout_ns);
/* CLOCK_MONOTONIC in nanoseconds. */
int64_t gr_nanotime(void);
/* The CLOCK_MONOTONIC time ns (>= 0) from now, for pthread_cond_timedwait
 * on a condition made with that clock. */
struct timespec gr_deadline_after(int64_t ns);
/* raw is a fresh mapping of len + align bytes (align a power of two, both
 * multiples of the page size): unmap what lies outside the align-aligned
 * len bytes inside it, and return their start. */
void *gr_map_trim(void *raw, size_t len, size_t align);

/*
 * One blocked party: a goroutine or a plain thread.  A select puts one
 * sudog per case on the queues, all pointing at the same waiter; whoever
 * completes one of them (or cancels the wait) must first win `claimed`
 * 0 -> 1.  Losers leave the waiter alone: exactly one case fires, and a
 * cancel that loses means the operation completed.
 */
typedef struct gr_waiter {
    int kind;                   /* GR_WAIT_* */
    atomic_int claimed;         /* 0 open, 1 taken by a waker or a cancel */
    struct gr_sudog *fired;     /* the sudog that completed, set by winner */
    gr_g *g;                    /* GR_WAIT_G: the parked goroutine */
    gr_sema *sema;              /* GR_WAIT_THREAD: in gr_block's frame */
    unsigned forkgen;           /* GR_WAIT_THREAD: gr_forkgen when made */
} gr_waiter;

typedef struct gr_waitq {
    struct gr_sudog *head, *tail;
} gr_waitq;

/* A waiter's place on one wait queue (Go's sudog): a channel's sendq or
 * recvq, or a sync object's queue. */
typedef struct gr_sudog {
    struct gr_sudog *next;      /* queue links, under the queue's lock; */
    struct gr_sudog *prev;      /* off the queue, next links a wakelist */
    gr_waitq *q;                /* the queue it is on, or NULL */
    gr_waiter *w;
    PyObject *elem;             /* chan send: the value (borrowed from the
                                   sender, who keeps it alive); recv: the
                                   value handed over (new reference) */
    bool success;               /* completed by the waker -- chan: by a
                                   peer (false: by close); sync: granted
                                   (ownership, units, the rw lock) */
    int caseidx;                /* select: the case index */
    int64_t weight;             /* sync.Sema: units wanted */
    int64_t since;              /* sync.Mutex: when it first waited */
    uint32_t ticket;            /* sync.Cond: its notifyList ticket */
} gr_sudog;

bool gr_waiter_claim(gr_waiter *w);
/* Wake a claimed waiter.  No runtime lock held; GIL held or not. */
void gr_waiter_wake(gr_waiter *w);
/* Set w up for the caller: its goroutine (returned), or NULL on a plain
 * thread.  Nothing to free afterwards. */
gr_g *gr_waiter_init(gr_waiter *w);

/* Taken sudogs to wake after the lock is released. */
typedef struct {
    gr_sudog *head, *tail;
} gr_wakelist;

/* A field written under a lock and read without it elsewhere (select's
 * peek): relaxed stores and acquire loads, plain moves on x86-64 and
 * aarch64, visible as atomics to TSan. */
#define GR_STORE_RELAXED(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define GR_LOAD_ACQUIRE(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)

/* The wait queue's and the wake list's operations (inline). */
#include "waitq.h"

/* What a blocker holds when it blocks: `locks` (held on entry, in lock
 * order; gr_block releases them) guard the queues its `sgs` are on.  Or,
 * for a sleep, publish(arg) makes the waiter findable (after the locks,
 * and for a goroutine only once it is off the CPU) and unpublish(arg)
 * undoes that when a thread's interrupt won the claim. */
typedef struct {
    pthread_mutex_t **locks;
    int nlocks;
    gr_sudog *sgs;
    int nsgs;
    void (*publish)(void *arg);
    void (*unpublish)(void *arg);
    void *arg;
} gr_blockon;

/* The park-or-block primitive.  GIL held on entry and exit (a goroutine
 * may come back on another OS thread).  w from gr_waiter_init.  0 when
 * woken (see w->fired and its success); -1 with an exception
 * (KeyboardInterrupt, Deadlock, finalization) when a plain thread's wait
 * was interrupted and left no trace: its sudogs are off their queues. */
int gr_block(gr_waiter *w, gr_blockon *bo, const char *reason);
/* The common case: push sg on q (guarded by mu, held; front: at the
 * head) and gr_block.  q NULL: block forever (nilchan). */
int gr_block_on(gr_waitq *q, gr_sudog *sg, bool front, pthread_mutex_t *mu,
                const char *reason);
void gr_blockon_lock(const gr_blockon *bo);
void gr_blockon_unlock(const gr_blockon *bo);
/* Lock, unlink every sudog still queued, unlock (select's pass 3). */
void gr_blockon_dequeue(const gr_blockon *bo);

/* ---- scheduler (sched.c) -------------------------------------------- */

/* The goroutine running on this OS thread, or NULL on a plain thread. */
gr_g *gr_getg(void);
/* The C stack g runs on (interp.c fits a worker thread state to it). */
gr_stack *gr_g_stack(gr_g *g);
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
int gr_sched_init(gr_globals_t *st);
int gr_sched_exec(PyObject *module);
/* Start fn(*args) as a goroutine (GIL held); new ref to None or NULL. */
PyObject *gr_go(PyObject *fn, PyObject *args);
/* The interpreter is exiting: runtime threads must not touch Python. */
bool gr_sched_exiting(void);
bool gr_sched_stopped(void);
/* _core._shutdown (module.c): mark exiting (false if it already was),
 * then, GIL released, wait for sysmon to leave its loop. */
bool gr_sched_stop(void);
void gr_sched_wait_sysmon(void);
/* fork: the pthread_atfork handlers (module.c calls them around timer.c's)
 * and after_in_child's part (GIL held; 0, or -1 with an exception). */
void gr_sched_fork_prepare(void);
void gr_sched_fork_parent(void);
void gr_sched_fork_child(void);
int gr_sched_after_fork(void);

/* Deadlock bookkeeping for plain threads blocked in the runtime (GIL
 * held): note_blocked(+1/-1) around a wait; deadlocked() asks whether
 * nothing can ever end it; epoch() changes whenever a G is made runnable. */
int gr_sched_note_blocked(int delta);
bool gr_sched_deadlocked(void);
uint64_t gr_sched_epoch(void);

/* ---- sync (sync.c) and the map (gomap_type.c) ------------------------ */

int gr_sync_init(gr_globals_t *st);
int gr_sync_exec(PyObject *module);
int gr_gomap_init(gr_globals_t *st);
int gr_gomap_exec(PyObject *module);

/* ---- context (context.c: goroutine.context's cancel tree) ------------ */

int gr_context_init(gr_globals_t *st);
int gr_context_exec(PyObject *module);

/* ---- timers (timer.c) ----------------------------------------------- */

int gr_timer_init(gr_globals_t *st);
int gr_timer_exec(PyObject *module);
/* At exit: wait until the timer thread is done delivering under the GIL. */
void gr_timer_fence(void);
/* fork: module.c's pthread_atfork handlers call these around sched.c's
 * (see sched.c's "fork" section). */
void gr_timer_fork_prepare(void);
void gr_timer_fork_parent(void);
void gr_timer_fork_child(void);
int gr_timer_after_fork(void);      /* GIL held: restart the loop thread */
/* C function timers (context.c's and netpoll.c's deadlines; timer.c
 * says more): fn(arg, seq) on the timer thread when due, with the GIL
 * and a strong reference to arg (a PyObject) if `gil`, else with no GIL
 * and no lock.  new: GIL held, the caller's reference or NULL with an
 * exception; add: arm for monotonic `when` ns (gr_timer_when(seconds)
 * from now), any thread; free: disarm and drop the caller's reference
 * (GIL held for a `gil` record, whose fn then never runs). */
typedef struct gr_timer_rec gr_timer_rec;
gr_timer_rec *gr_timer_fn_new(void (*fn)(void *, uint64_t), void *arg,
                              bool gil);
void gr_timer_fn_add(gr_timer_rec *rec, int64_t when, uint64_t seq);
void gr_timer_fn_free(gr_timer_rec *rec);
int64_t gr_timer_when(double seconds);
/* A duration or deadline argument as float seconds (time.sleep's rules;
 * `what` names it in the TypeError).  0, or -1 with an exception. */
int gr_timer_seconds(PyObject *o, const char *what, double *out);

/* ---- the netpoller (netpoll.c) --------------------------------------- */

int gr_netpoll_init(gr_globals_t *st);
int gr_netpoll_exec(PyObject *module);
int gr_interp_exec(PyObject *module);
/* What the scheduler calls, through gr_sched_set_netpoll (netpoll.c is
 * above sched.c, so sched.c reaches it only through this table). */
typedef void (*gr_inject_fn)(gr_g *g, void *ctx);
typedef struct {
    /* Wait at most delay_ns (< 0: until an event or wakeup(); 0: not at
     * all) for readiness, and hand every goroutine it makes runnable to
     * inject(g, ctx), claimed, still G_WAITING.  No GIL, no lock held.
     * Returns how many were injected. */
    int (*poll)(int64_t delay_ns, gr_inject_fn inject, void *ctx);
    /* Make a blocked poll return soon.  Any thread. */
    void (*wakeup)(void);
} gr_netpoll_ops;
void gr_sched_set_netpoll(const gr_netpoll_ops *ops);
bool gr_sched_netpolling(void);

/* ---- thread states (pystate.c: the only file with CPython internals) -- */

PyThreadState *gr_pystate_new_m(PyInterpreterState *interp);
PyThreadState *gr_pystate_new(void);
void gr_pystate_list(PyThreadState *ts);
void gr_pystate_unlist(PyThreadState *ts);
bool gr_pystate_delete(PyThreadState *ts);
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
/* Preemption (3.12+): cb runs at the next safe point of the thread that
 * runs Python; out/in bracket cb's wait without the GIL. */
bool gr_pystate_preempt_supported(void);
bool gr_pystate_preempt_post(PyInterpreterState *interp, int (*cb)(void *));
void gr_pystate_preempt_out(PyThreadState *ts);
void gr_pystate_preempt_in(PyThreadState *ts);
/* Worker interpreters (interp.c): see pystate.c. */
PyThreadState *gr_pystate_foreign_new(PyInterpreterState *interp, char *lo,
                                      size_t size);
void gr_pystate_foreign_attach(PyThreadState *ts);

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

int gr_chan_init(gr_globals_t *st);
int gr_chan_exec(PyObject *module);
int gr_select_init(gr_globals_t *st);
int gr_select_exec(PyObject *module);

/* The hchan behind a chan object, or NULL for nilchan.  `dir` is the
 * direction the object allows (GR_DIR_*). */
enum { GR_DIR_BOTH = 0, GR_DIR_SEND = 1, GR_DIR_RECV = 2 };
int gr_chan_unwrap(PyObject *obj, hchan **c, int *dir);

/* Lock, enqueue and the one-shot operations selectgo needs. */
void gr_chan_lock(hchan *c);
void gr_chan_unlock(hchan *c);
pthread_mutex_t *gr_chan_mutex(hchan *c);
/* Try to complete a send/recv on a locked channel without blocking.
 * Returns 1 done, 0 would block, -1 closed (send: panic; recv: zero value).
 * recv stores a new reference in *out.  A peer to wake after unlocking is
 * added to wl. */
int gr_chan_trysend(hchan *c, PyObject *v, gr_wakelist *wl);
int gr_chan_tryrecv(hchan *c, PyObject **out, gr_wakelist *wl);
void gr_chan_enqueue(hchan *c, gr_sudog *sg, bool send);
/* Without the lock: could a send (send) or receive on c complete now?
 * 1 maybe (confirm under the lock), -1 closed, 0 not ready at some
 * instant during the call (a non-blocking one-case select may take its
 * default on that, as Go's selectnbrecv does). */
int gr_chan_peek(hchan *c, bool send);
/* Close c unless it is closed: false if it was (no exception).  Wakes
 * its waiters; never runs Python code.  Any thread, GIL or not. */
bool gr_chan_tryclose(hchan *c);
/* Element types (pygolang's dtype), fixed at creation; GIL held.
 * gr_chan_dtype: the GR_DTYPE_* of a chan object.  gr_chan_convert: a new
 * reference to v as an element of that type, NULL with TypeError (or
 * OverflowError) when it is not one.  gr_chan_zero: a new reference to
 * the type's zero value, received from a closed channel. */
enum { GR_DTYPE_OBJECT, GR_DTYPE_STRUCTZ, GR_DTYPE_BOOL, GR_DTYPE_INT,
       GR_DTYPE_DOUBLE, GR_NDTYPES };
int gr_chan_dtype(PyObject *chanobj);
PyObject *gr_chan_convert(int dtype, PyObject *v);
PyObject *gr_chan_zero(int dtype);
/* GIL held: make c (a fresh channel) the channel of `timer`, which it then
 * keeps alive; len()/cap() of c read 0 (Go 1.23). */
void gr_chan_set_timer(hchan *c, PyObject *timer);

#endif /* GR_CORE_H */
