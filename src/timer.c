/*
 * timer.c: every timer of the process, on one libuv loop thread; sleep,
 * and the C half of goroutine.time's Timer and Ticker.
 *
 * The timers live in one binary min-heap ordered by `when` (monotonic
 * nanoseconds), as Go's runtime keeps them (runtime/time.go: a heap per P;
 * we have one loop thread, so one heap).  The loop thread arms one clock
 * for the earliest deadline: on Linux a timerfd watched by the loop (it
 * keeps nanoseconds, where libuv's uv_timer_t rounds to milliseconds),
 * elsewhere a uv_timer_t.  Any thread adds and deletes
 * records under L.lock directly: no request queue, no allocation beyond the
 * record itself.
 *
 * Waking the loop.  L.armed is the time by which the loop thread will look
 * at the heap again (INT64_MAX: never, the heap was empty).  The loop
 * thread sets it, under L.lock, to the heap's earliest `when` each time it
 * re-arms.  An add whose `when` is earlier lowers L.armed and sends
 * uv_async_send; every other add (the common case: deadlines mostly grow,
 * as with 10,000 sleepers or a stream of with_timeout contexts) costs no
 * system call and no wake-up.  A delete never wakes the loop: at worst the
 * loop wakes at the old deadline, finds nothing due, and re-arms.
 *
 * Three kinds of record:
 *   - SLEEP: a waiter (goroutine or thread).  Firing claims and wakes it
 *     with no GIL: 10,000 sleeping goroutines cost one thread, and a
 *     sleeper's wake-up never waits for Python code to yield the GIL.
 *   - FN: a C function fn(arg, seq) called on the loop thread; no
 *     goroutine, no Python callable.  Two users, one kind: context.c's
 *     deadlines ask for the GIL (`gil`), and then arg is an object the
 *     record holds strongly until it fires or gr_timer_fn_free takes it
 *     out (both with the GIL); netpoll.c's deadlines run without the GIL
 *     or any lock, and re-arm one record with a new seq, by which fn
 *     tells a stale fire from a live one.
 *   - PY: a Timer/Ticker object (owner).  Firing takes the GIL, then
 *     delivers (sends the time it was due on owner.c without blocking --
 *     a full buffer drops the tick -- or starts owner.f in a goroutine).
 *     stop()/reset() run with the GIL too, so "stopped" and "delivered"
 *     are decided under one lock: after they return no stale value is
 *     received (Go 1.23).  A ticker goes back into the heap when it fires,
 *     at its next multiple of the period after now: missed ticks are
 *     dropped, never queued.
 *
 * Go 1.23's timer channels are synchronous: a value sent into owner.c's
 * one slot but not received is not delivered yet, so stop()/reset() drain
 * it and report the timer as stopped, and len()/cap() of the channel read
 * 0 (chan.c's `timer` field).  Go keeps a channel timer out of its heap
 * unless someone is blocked on the channel; we keep it in the heap but
 * hold its owner weakly (below), which gives the same rules.
 *
 * Invariants (L.lock):
 *   rec->heapidx >= 0  iff  rec is in the heap, at L.heap[rec->heapidx];
 *   L.n > 0  implies  L.armed <= L.heap[0]->when, or an uv_async_send is
 *                     pending that will make the loop re-arm.
 *
 * Ownership: rec->refs counts the heap (while the record is in it, or is
 * being fired by the loop) plus one holder outside it (the thread that
 * sleeps, or the owner object).  The last one frees the record.
 * rec->owner is read and written only with the GIL held.  For a func
 * timer (time.after_func) it is a strong reference: f must
 * run even if nobody keeps the Timer, as Go's heap keeps it.  For a
 * channel timer it is borrowed (weak): the channel holds the Timer and the
 * Timer the channel, so a receiver blocked on the channel, or any user
 * reference to either, keeps it firing, and when nothing does the cycle
 * is collected (Go 1.23 collects unreferenced timers) and the Timer's
 * dealloc disowns and unheaps the record before anything can release the
 * GIL.  The fire skips an owner at refcount 0 (mid-dealloc).
 *
 * gr_timers_pending (state.c; sched.c's deadlock check reads it)
 * counts records that can still fire: +1 on add, -1 on a delete that
 * removes the record, or after a one-shot has fired (its waiter is woken
 * first, so the deadlock check never sees neither).
 *
 * Locks: L.lock is a leaf.  Nothing is woken, freed or called under it,
 * except uv_async_send (a write to an eventfd; see timer_add).
 */
#include "core.h"

#include <math.h>
#include <uv.h>
#include <fcntl.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/timerfd.h>
#endif

enum { TK_SLEEP = 1, TK_PY = 2, TK_FN = 3 };

typedef struct gr_pytimer gr_pytimer;

typedef struct gr_timer_rec {
    atomic_int refs;            /* heap + one outside holder */
    int kind;                   /* TK_* */
    int64_t when;               /* L.lock: monotonic ns when it fires */
    int64_t period;             /* ns; > 0 for a Ticker */
    long heapidx;               /* L.lock: index in L.heap, or -1 */
    struct gr_timer_rec *fnext; /* loop thread: its list of records due */
    gr_waiter w;                /* TK_SLEEP */
    gr_pytimer *owner;          /* TK_PY, GIL: the Timer, while pending */
    bool strong;                /* TK_PY: owner is a strong reference */
    bool delivered;             /* TK_PY, GIL: a one-shot has delivered */
    int64_t due;                /* loop thread: the `when` it last fired at */
    void (*fn)(void *, uint64_t);   /* TK_FN: called on the loop thread,
                                       no lock held */
    void *arg;                  /* TK_FN: fn's first argument; with gil, a
                                   strong PyObject reference, NULL once
                                   fired or freed (GIL) */
    uint64_t seq;               /* TK_FN: fn's second, set by each add */
    bool gil;                   /* TK_FN: fn runs with the GIL */
} gr_timer_rec;

static struct {
    pthread_mutex_t lock;       /* guards heap, n, cap, armed; leaf lock */
    gr_timer_rec **heap;        /* min-heap on when */
    long n, cap;
    int64_t armed;              /* the loop looks at the heap by then */
    uv_loop_t loop;             /* loop thread only, after start */
    uv_async_t *async;          /* wakes the loop; a new one after fork */
    uv_async_t async0;          /* the first process's */
    uv_timer_t tick;            /* armed for heap[0]->when (not Linux) */
    int tfd;                    /* Linux: a timerfd armed for it, in ns */
    uv_poll_t tpoll;            /* Linux: watches tfd */
    atomic_bool started;
    pthread_t thread;
    pid_t pid;                  /* the process the loop thread runs in */
    pthread_mutex_t fire;       /* held while delivering under the GIL */
    PyThreadState *ts;          /* the loop thread's own, made on it */
    bool forked;                /* a forked child's copy of a started loop:
                                   loop_thread_start must uv_loop_fork it */
    gr_sema ready;              /* posted once ts exists */
} L = {.lock = PTHREAD_MUTEX_INITIALIZER, .armed = INT64_MAX,
       .fire = PTHREAD_MUTEX_INITIALIZER};

static void rec_unref(gr_timer_rec *rec);

static int64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the heap (L.lock held) ----------------------------------------- */

static void
heap_set(long i, gr_timer_rec *rec)
{
    L.heap[i] = rec;
    rec->heapidx = i;
}

static void
heap_up(long i)
{
    gr_timer_rec *rec = L.heap[i];
    while (i > 0) {
        long parent = (i - 1) / 2;
        if (L.heap[parent]->when <= rec->when) {
            break;
        }
        heap_set(i, L.heap[parent]);
        i = parent;
    }
    heap_set(i, rec);
}

static void
heap_down(long i)
{
    gr_timer_rec *rec = L.heap[i];
    for (;;) {
        long c = 2 * i + 1;
        if (c >= L.n) {
            break;
        }
        if (c + 1 < L.n && L.heap[c + 1]->when < L.heap[c]->when) {
            c++;
        }
        if (rec->when <= L.heap[c]->when) {
            break;
        }
        heap_set(i, L.heap[c]);
        i = c;
    }
    heap_set(i, rec);
}

/* Insert; returns whether the loop must be woken to re-arm earlier. */
static bool
heap_push(gr_timer_rec *rec)
{
    if (L.n == L.cap) {
        long cap = L.cap ? L.cap * 2 : 64;
        gr_timer_rec **h = realloc(L.heap, cap * sizeof *h);
        if (h == NULL) {
            Py_FatalError("goroutine: out of memory adding a timer");
        }
        L.heap = h;
        L.cap = cap;
    }
    heap_set(L.n++, rec);
    heap_up(L.n - 1);
    if (rec->when < L.armed) {
        L.armed = rec->when;
        return true;
    }
    return false;
}

static void
heap_remove(gr_timer_rec *rec)
{
    long i = rec->heapidx;
    gr_timer_rec *last = L.heap[--L.n];
    rec->heapidx = -1;
    if (i == L.n) {
        return;
    }
    heap_set(i, last);
    if (i > 0 && last->when < L.heap[(i - 1) / 2]->when) {
        heap_up(i);
    }
    else {
        heap_down(i);
    }
}

/* ---- loop thread ---------------------------------------------------- */

static void pytimer_fire(gr_timer_rec *rec);  /* below, GIL held */
static void fn_fire(gr_timer_rec *rec);       /* below, GIL held */

/* Fire everything due, then arm the uv timer for what remains.  Runs on
 * the loop thread from either of its callbacks. */
static void
run_timers(void)
{
    gr_timer_rec *due = NULL, **tail = &due;
    int64_t now = mono_ns();
    pthread_mutex_lock(&L.lock);
    while (L.n > 0 && L.heap[0]->when <= now) {
        gr_timer_rec *rec = L.heap[0];
        rec->due = rec->when;
        if (rec->period > 0) {
            /* A ticker stays in the heap (and keeps its reference); the
             * firing holds one more.  Its next tick is the first period
             * boundary after now. */
            int64_t late = now - rec->when;
            rec->when += rec->period * (1 + late / rec->period);
            heap_down(0);
            atomic_fetch_add(&rec->refs, 1);
        }
        else {
            heap_remove(rec);   /* the heap's reference goes to `due` */
        }
        *tail = rec;
        tail = &rec->fnext;
    }
    *tail = NULL;
    int64_t next = L.n > 0 ? L.heap[0]->when : INT64_MAX;
    L.armed = next;
    pthread_mutex_unlock(&L.lock);

    /* The GIL is taken once for all the PY records due together (10,000
     * contexts timing out at once cost one GIL hand-off, not 10,000), and
     * never once the interpreter finalizes: Python must not be touched.
     * It is taken with the loop thread's own long-lived thread state, as a
     * daemon thread does, never with PyGILState_Ensure: that makes a new
     * thread state each time, and doing so while finalization deletes
     * thread states crashed in PyThreadState_New (a core dump).  If the
     * check below loses a race with the start of finalization, CPython
     * ends this thread inside PyEval_RestoreThread, as it ends daemon
     * threads: timers are abandoned at exit anyway. */
    bool gil = false;
    pthread_mutex_lock(&L.fire);    /* see gr_timer_fence */
    while (due != NULL) {
        gr_timer_rec *rec = due;
        due = rec->fnext;
        if (rec->kind == TK_SLEEP) {
            if (gr_waiter_claim(&rec->w)) {
                gr_waiter_wake(&rec->w);
            }
        }
        else if (rec->kind == TK_FN && !rec->gil) {
            rec->fn(rec->arg, rec->seq);
        }
        else {
            if (!gil && !gr_sched_exiting() && !gr_pystate_finalizing()) {
                PyEval_RestoreThread(L.ts);
                gil = true;
            }
            if (gil) {
                if (rec->kind == TK_FN) {
                    fn_fire(rec);
                }
                else {
                    pytimer_fire(rec);
                }
            }
        }
        if (rec->period == 0) {
            atomic_fetch_sub(&gr_timers_pending, 1);
        }
        rec_unref(rec);
    }
    if (gil) {
        PyEval_SaveThread();
    }
    pthread_mutex_unlock(&L.fire);

#ifdef __linux__
    /* A timerfd keeps nanoseconds: libuv's timers round to milliseconds,
     * which would make every sleep up to 1 ms late. */
    struct itimerspec its = {{0, 0}, {0, 0}};   /* zero: disarm */
    if (next != INT64_MAX) {
        its.it_value.tv_sec = next / 1000000000;
        its.it_value.tv_nsec = next % 1000000000;
    }
    timerfd_settime(L.tfd, TFD_TIMER_ABSTIME, &its, NULL);
#else
    if (next == INT64_MAX) {
        uv_timer_stop(&L.tick);
        return;
    }
    /* libuv counts whole milliseconds from its cached clock: refresh it,
     * and round up so the timer never fires before `next`. */
    uv_update_time(&L.loop);
    int64_t wait = next - mono_ns();
    uint64_t ms = wait <= 0 ? 0 : (uint64_t)((wait + 999999) / 1000000);
    uv_timer_start(&L.tick, (uv_timer_cb)run_timers, ms, 0);
#endif
}

#ifdef __linux__
static void
tfd_cb(uv_poll_t *h, int status, int events)
{
    uint64_t expirations;
    /* Nonblocking: EAGAIN when a re-arm raced the wake-up; nothing lost,
     * run_timers looks at the heap either way. */
    ssize_t r = read(L.tfd, &expirations, sizeof expirations);
    (void)r;
    run_timers();
}
#endif

static void
async_cb(uv_async_t *a)
{
    run_timers();
}

static void *
loop_main(void *arg)
{
    /* Made here, so that it is bound to this OS thread (PyGILState finds
     * it for a ctypes callback in a timer's function).  Needs no GIL; the
     * starter waits for it with the GIL held, so the interpreter cannot
     * begin to finalize meanwhile. */
    L.ts = PyThreadState_New(PyInterpreterState_Main());
    if (L.ts == NULL) {
        Py_FatalError("goroutine: cannot make a thread state for the "
                      "timer thread");
    }
    gr_sema_post(&L.ready);
    uv_run(&L.loop, UV_RUN_DEFAULT);
    return NULL;
}

static int
tfd_init(void)
{
#ifdef __linux__
    L.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (L.tfd < 0 || uv_poll_init(&L.loop, &L.tpoll, L.tfd) != 0 ||
        uv_poll_start(&L.tpoll, UV_READABLE, tfd_cb) != 0) {
        return -1;
    }
#endif
    return 0;
}

/* Start the loop thread and wait until its thread state exists.  L.lock
 * held, GIL held.  0, or -1 with an exception set. */
static int
loop_thread_start(void)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    gr_sema_init(&L.ready);
    int r = pthread_create(&L.thread, &attr, loop_main, NULL);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "goroutine: cannot start the timer thread");
        return -1;
    }
    gr_sema_wait(&L.ready, -1);
    L.pid = getpid();
    atomic_store(&L.started, true);
    return 0;
}

/* In a forked child: the parent's loop thread is gone, and the loop's
 * epoll descriptor and our timerfd are shared with the parent's (one
 * kernel object each).  Give the child its own timerfd under the same
 * descriptor number (dup2: the uv_poll watching it stays valid), let
 * libuv make its own kernel state (uv_loop_fork re-registers every
 * watcher), start a loop thread and make it look at the heap (timers of
 * the parent's Timer objects are still armed in the child).  L.lock held,
 * GIL held. */
static int
loop_restart_forked(void)
{
#ifdef __linux__
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0 || dup3(fd, L.tfd, O_CLOEXEC) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    close(fd);
#endif
    /* The parent's async handle may be 'pending' (sent, not yet seen by
     * its loop thread) at the fork, and uv_loop_fork does not reset that:
     * every uv_async_send in the child would then be swallowed and no
     * earlier deadline would ever wake the loop (seen: sleeps in a child
     * never ending).  Close it and wake with a fresh handle. */
    uv_async_t *a = malloc(sizeof *a);
    if (a == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (uv_loop_fork(&L.loop) != 0) {
        free(a);
        PyErr_SetString(PyExc_RuntimeError,
                        "goroutine: cannot reinitialise the libuv loop "
                        "after fork");
        return -1;
    }
    uv_close((uv_handle_t *)L.async, NULL);     /* memory stays: leaked */
    if (uv_async_init(&L.loop, a, async_cb) != 0) {
        free(a);
        PyErr_SetString(PyExc_RuntimeError,
                        "goroutine: cannot reinitialise the libuv loop "
                        "after fork");
        return -1;
    }
    L.async = a;
    L.forked = false;
    L.armed = INT64_MAX;
    if (loop_thread_start() < 0) {
        return -1;
    }
    uv_async_send(L.async);
    return 0;
}

static int
loop_start(void)
{
    if (atomic_load(&L.started)) {
        return 0;
    }
    pthread_mutex_lock(&L.lock);
    if (!atomic_load(&L.started) && L.forked) {
        int r = loop_restart_forked();
        pthread_mutex_unlock(&L.lock);
        return r;
    }
    if (!atomic_load(&L.started)) {
        if (uv_loop_init(&L.loop) != 0 ||
            uv_async_init(&L.loop, (L.async = &L.async0), async_cb) != 0 ||
            uv_timer_init(&L.loop, &L.tick) != 0 || tfd_init() != 0) {
            pthread_mutex_unlock(&L.lock);
            PyErr_SetString(PyExc_RuntimeError,
                            "goroutine: cannot start the libuv loop");
            return -1;
        }
        if (loop_thread_start() < 0) {
            pthread_mutex_unlock(&L.lock);
            return -1;
        }
    }
    pthread_mutex_unlock(&L.lock);
    return 0;
}

/* fork: see sched.c's fork section.  L.lock is a leaf, taken after
 * sched.lock. */
void
gr_timer_fork_prepare(void)
{
    pthread_mutex_lock(&L.lock);
}

void
gr_timer_fork_parent(void)
{
    pthread_mutex_unlock(&L.lock);
}

/* In the child, from fork() itself: no Python, no allocation. */
void
gr_timer_fork_child(void)
{
    pthread_mutex_init(&L.lock, NULL);
    pthread_mutex_init(&L.fire, NULL);
    /* What can still fire here is exactly what the heap holds (L.lock
     * was held across the fork, so it is whole).  The parent's count also
     * had one-shots its loop thread had taken off the heap but not yet
     * delivered and counted, deletes not yet counted, and adds counted
     * before they reached the heap: none of them will ever be counted
     * down here, and a count that never reaches 0 kept the child's
     * deadlock check quiet forever (its blocked main thread hung). */
    atomic_store(&gr_timers_pending, L.n);
    if (atomic_load(&L.started)) {
        atomic_store(&L.started, false);
        L.forked = true;
        L.ts = NULL;            /* CPython frees it in the child */
    }
}

/* after_in_child, GIL held: start the loop again now if timers are armed
 * (the parent's Timer objects, or ghosts' sleeps); otherwise the first
 * timer of the child starts it (loop_start). */
int
gr_timer_after_fork(void)
{
    int r = 0;
    pthread_mutex_lock(&L.lock);
    if (!atomic_load(&L.started) && L.forked && L.n > 0) {
        r = loop_restart_forked();
    }
    pthread_mutex_unlock(&L.lock);
    return r;
}

/* At exit, after gr_sched_exiting() became true, GIL released: wait until
 * the loop thread is not delivering, so it has either finished with
 * Python or will see `exiting` and never take the GIL again.  Without
 * this it could check `exiting`, lose the CPU, and call
 * PyGILState_Ensure in the middle of finalization (a crash in
 * PyThreadState_New, seen in a core dump).  A forked child has no loop
 * thread, and the parent's may have held the lock at the fork. */
void
gr_timer_fence(void)
{
    if (atomic_load(&L.started) && L.pid == getpid()) {
        pthread_mutex_lock(&L.fire);
        pthread_mutex_unlock(&L.fire);
    }
}

/* Add rec to the heap (it takes the heap's reference, already counted in
 * rec->refs).  Any thread, GIL or not. */
static void
timer_add(gr_timer_rec *rec)
{
    atomic_fetch_add(&gr_timers_pending, 1);
    pthread_mutex_lock(&L.lock);
    if (heap_push(rec)) {
        /* Sent under L.lock (rare: only a new earliest deadline) so that
         * fork, which holds L.lock, never copies a send half done: the
         * child closes the parent's handle, and libuv's close spins until
         * a send in progress completes -- in the child, forever. */
        uv_async_send(L.async);
    }
    pthread_mutex_unlock(&L.lock);
}

/* Take rec out of the heap if it is still there.  Returns whether it was
 * removed: false when it has fired (a one-shot) or was never added.  The
 * caller keeps its own reference.  Any thread. */
static bool
timer_del(gr_timer_rec *rec)
{
    pthread_mutex_lock(&L.lock);
    bool removed = rec->heapidx >= 0;
    if (removed) {
        heap_remove(rec);
    }
    pthread_mutex_unlock(&L.lock);
    if (removed) {
        atomic_fetch_sub(&gr_timers_pending, 1);
        rec_unref(rec);         /* the heap's; the caller still has one */
    }
    return removed;
}

static void
rec_unref(gr_timer_rec *rec)
{
    if (atomic_fetch_sub(&rec->refs, 1) == 1) {
        free(rec);
    }
}

/* Seconds to nanoseconds, clamped to [0, about 146 years]: a sleep
 * never ends early, and `when` never overflows. */
static int64_t
duration_ns(double seconds)
{
    if (!(seconds > 0)) {
        return 0;
    }
    double ns = ceil(seconds * 1e9);
    return ns > 4.6e18 ? (int64_t)4600000000000000000 : (int64_t)ns;
}

static gr_timer_rec *
rec_new(int kind, double seconds, double period)
{
    gr_timer_rec *rec = calloc(1, sizeof *rec);
    if (rec == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    rec->kind = kind;
    rec->heapidx = -1;
    rec->when = mono_ns() + duration_ns(seconds);
    rec->period = period > 0 ? duration_ns(period) : 0;
    if (period > 0 && rec->period == 0) {
        rec->period = 1;
    }
    atomic_store(&rec->refs, 2);
    return rec;
}

/* ---- sleep ---------------------------------------------------------- */

/* gr_block's publish: for a goroutine it runs on g0, once the goroutine
 * is off the CPU, so the wake cannot precede the park. */
static void
publish_sleep(void *arg)
{
    timer_add((gr_timer_rec *)arg);
}

/* gr_block's unpublish: the thread won the claim, the loop will not wake
 * it. */
static void
cancel_sleep(void *arg)
{
    timer_del((gr_timer_rec *)arg);
}

/* Park the goroutine, or block the thread interruptibly, for `seconds`.
 * GIL held.  0 or -1 with an exception. */
static int
sleep_for(double seconds)
{
    if (!(seconds > 0)) {
        return 0;
    }
    if (loop_start() < 0) {
        return -1;
    }
    gr_timer_rec *rec = rec_new(TK_SLEEP, seconds, 0);
    if (rec == NULL) {
        return -1;
    }
    gr_blockon bo = {.publish = publish_sleep, .unpublish = cancel_sleep,
                     .arg = rec};
    if (gr_waiter_init(&rec->w) != NULL) {
        /* The heap's only: a goroutine is not interrupted, so it resumes
         * only after the fire, which drops the record. */
        atomic_store(&rec->refs, 1);
        return gr_block(&rec->w, &bo, "sleep");
    }
    int r = gr_block(&rec->w, &bo, "sleep");
    rec_unref(rec);
    return r;
}

/* A duration (or deadline) argument as seconds: an int, a float, or
 * anything with __float__ / __index__ (whose exceptions propagate; a
 * subclass's __float__ is honoured, as float(d) would).  NaN
 * is a ValueError with time.sleep()'s message; +-inf are accepted (they
 * clamp to "now" and "about 146 years", as any huge value does).
 * `what` names the argument in the TypeError.  0 or -1 with an error. */
static int
seconds_arg(PyObject *o, const char *what, double *out)
{
    double d;
    if (PyFloat_CheckExact(o)) {
        d = PyFloat_AS_DOUBLE(o);
    }
    else if (PyLong_CheckExact(o)) {
        d = PyLong_AsDouble(o);
    }
    else if (Py_TYPE(o)->tp_as_number != NULL &&
             (Py_TYPE(o)->tp_as_number->nb_float != NULL ||
              Py_TYPE(o)->tp_as_number->nb_index != NULL)) {
        d = PyFloat_AsDouble(o);
    }
    else {
        PyErr_Format(PyExc_TypeError, "%s must be a number of seconds, "
                     "not '%.200s'", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    if (d == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (isnan(d)) {
        PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
        return -1;
    }
    *out = d;
    return 0;
}

/* _seconds(d, what='duration', /) -> float: seconds_arg for the Python
 * half (goroutine.time; context.c calls gr_timer_seconds). */
static PyObject *
timer_seconds(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2 || (nargs == 2 && !PyUnicode_Check(args[1]))) {
        PyErr_SetString(PyExc_TypeError, "_seconds(d, what='duration')");
        return NULL;
    }
    const char *what = nargs == 2 ? PyUnicode_AsUTF8(args[1]) : "duration";
    double d;
    if (what == NULL || seconds_arg(args[0], what, &d) < 0) {
        return NULL;
    }
    return PyFloat_FromDouble(d);
}

static PyObject *
timer_sleep(PyObject *module, PyObject *arg)
{
    double d;
    if (seconds_arg(arg, "duration", &d) < 0) {
        return NULL;
    }
    if (sleep_for(d) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- C function timers (context.c's and netpoll.c's deadlines) ----- */

/* Loop thread, GIL held: a TK_FN record with `gil` is due.  The record's
 * reference to its object passes to this call; a free that ran first
 * (GIL held too) took it, and then nothing is called. */
static void
fn_fire(gr_timer_rec *rec)
{
    PyObject *obj = rec->arg;
    if (obj == NULL) {
        return;
    }
    rec->arg = NULL;
    rec->fn(obj, rec->seq);
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(obj);
    }
    Py_DECREF(obj);
}

/* A record that will call fn(arg, seq) on the loop thread when it fires:
 * with the GIL if `gil` (arg is then a PyObject, held strongly from here
 * until the fire or gr_timer_fn_free), else with no GIL and no lock held
 * (fn must not block).  GIL held (it may start the loop thread); NULL
 * with an exception.  The caller holds the one reference and gives it
 * back with gr_timer_fn_free; gr_timer_fn_add puts it in the heap, which
 * then holds a second. */
gr_timer_rec *
gr_timer_fn_new(void (*fn)(void *, uint64_t), void *arg, bool gil)
{
    if (loop_start() < 0) {
        return NULL;
    }
    gr_timer_rec *rec = rec_new(TK_FN, 0, 0);
    if (rec != NULL) {
        atomic_store(&rec->refs, 1);
        rec->fn = fn;
        rec->gil = gil;
        rec->arg = gil ? Py_NewRef((PyObject *)arg) : arg;
    }
    return rec;
}

/* Arm it for monotonic `when` (ns; gr_timer_when) with `seq` for fn.  A
 * record is in the heap at most once: re-arm it only after its fire or a
 * gr_timer_fn_free of the old one.  Any thread, GIL or not; only L.lock
 * (a leaf) is taken, so the caller may hold its own lock. */
void
gr_timer_fn_add(gr_timer_rec *rec, int64_t when, uint64_t seq)
{
    rec->when = when;
    rec->seq = seq;
    atomic_fetch_add(&rec->refs, 1);
    timer_add(rec);
}

/* Disarm it (if it has not fired) and drop the caller's reference; GIL
 * held for a `gil` record, which then drops its object too and never
 * calls fn.  Without `gil`, a fire already under way still calls fn: fn
 * must recognise a stale seq. */
void
gr_timer_fn_free(gr_timer_rec *rec)
{
    PyObject *obj = NULL;
    if (rec->gil) {
        obj = rec->arg;
        rec->arg = NULL;
    }
    timer_del(rec);
    rec_unref(rec);
    Py_XDECREF(obj);
}

/* The monotonic ns `seconds` from now, as a sleep of it would end. */
int64_t
gr_timer_when(double seconds)
{
    return mono_ns() + duration_ns(seconds);
}

int
gr_timer_seconds(PyObject *o, const char *what, double *out)
{
    return seconds_arg(o, what, out);
}

/* ---- Timer / Ticker (the C half of goroutine.time) ------------------ */

struct gr_pytimer {
    PyObject_HEAD
    PyObject *c;                /* a channel timer's channel, or NULL */
    PyObject *f;                /* callable to start as a goroutine, or NULL */
    gr_timer_rec *rec;          /* the pending record, GIL */
    double period;              /* > 0: a ticker */
};

/* nilchan: the .c of a func timer (Go's AfterFunc timer has a nil C). */

/* The wall-clock time at monotonic `when`: Go sends the time the timer
 * was due, not the time the loop thread got to it. */
static PyObject *
wall_at(int64_t when)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double late = (double)(mono_ns() - when) * 1e-9;
    return PyFloat_FromDouble((double)ts.tv_sec + ts.tv_nsec * 1e-9 - late);
}

/* GIL held: drop the record's reference to its owner, if it has one. */
static void
rec_disown(gr_timer_rec *rec)
{
    gr_pytimer *t = rec->owner;
    rec->owner = NULL;
    if (t != NULL && rec->strong) {
        Py_DECREF(t);
    }
}

/* Loop thread, GIL held: deliver a PY record's fire. */
static void
pytimer_fire(gr_timer_rec *rec)
{
    gr_pytimer *t = rec->owner;
    /* A weak owner at refcount 0 is being deallocated (a weakref
     * callback or __del__ of a subclass can release the GIL before our
     * dealloc runs); that dealloc disowns the record before the memory
     * goes, so reading the count is safe, and nothing is delivered. */
    if (t == NULL || t->rec != rec || rec->delivered || Py_REFCNT(t) == 0) {
        return;
    }
    Py_INCREF(t);
    if (rec->period == 0) {
        rec->delivered = true;
        rec_disown(rec);
    }
    if (t->c != NULL) {
        hchan *c;
        int dir;
        PyObject *now = wall_at(rec->due);
        if (now != NULL && gr_chan_unwrap(t->c, &c, &dir) == 0 && c) {
            gr_wakelist wl = {0};
            gr_chan_lock(c);
            gr_chan_trysend(c, now, &wl);   /* full: tick dropped */
            gr_chan_unlock(c);
            gr_wakelist_wake(&wl);
        }
        Py_XDECREF(now);
    }
    if (t->f != NULL) {
        PyObject *args = PyTuple_New(0);
        PyObject *r = args ? gr_go(t->f, args) : NULL;
        Py_XDECREF(args);
        Py_XDECREF(r);
    }
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable((PyObject *)t);
    }
    Py_DECREF(t);
}

/* Drop the value waiting in t.c's buffer, if any: after stop/reset no
 * stale value.  Only the timer sends on its channel (one slot), and both
 * the fire and this run with the GIL, so at most one value is there and
 * it is the timer's.  Returns whether there was one. */
static bool
drain(gr_pytimer *t)
{
    hchan *c;
    int dir;
    if (t->c == NULL || gr_chan_unwrap(t->c, &c, &dir) < 0 || c == NULL) {
        return false;
    }
    bool any = false;
    for (;;) {
        PyObject *v = NULL;
        gr_wakelist wl = {0};
        gr_chan_lock(c);
        int r = gr_chan_tryrecv(c, &v, &wl);
        gr_chan_unlock(c);
        gr_wakelist_wake(&wl);
        Py_XDECREF(v);
        if (r <= 0) {
            return any;
        }
        any = true;
    }
}

/* Stop t, GIL held.  Returns Go 1.23's answer: true if the stop kept a
 * value or call from happening -- the record had not fired, or its value
 * sat unreceived in the channel (drained here: timer channels are
 * synchronous, a value counts as delivered only once received). */
static bool
pytimer_stop(gr_pytimer *t)
{
    gr_timer_rec *rec = t->rec;
    bool active = false;
    if (rec != NULL) {
        t->rec = NULL;
        active = !rec->delivered;
        rec_disown(rec);    /* a strong one: the caller holds another */
        timer_del(rec);
        rec_unref(rec);     /* our outside reference */
    }
    if (drain(t)) {
        active = true;
    }
    return active;
}

/* GIL held.  A func timer's record owns a strong reference to t, so an
 * after_func whose Timer was dropped still runs (as Go's heap keeps it).
 * A channel timer's record holds t weakly: only a reference to t or to
 * t.c (which holds t) keeps it, so a dropped Timer or Ticker is
 * collected, and its dealloc takes the record out of the heap. */
static int
pytimer_start(gr_pytimer *t, double d)
{
    if (loop_start() < 0) {
        return -1;
    }
    gr_timer_rec *rec = rec_new(TK_PY, d, t->period);
    if (rec == NULL) {
        return -1;
    }
    rec->strong = t->f != NULL;
    rec->owner = rec->strong ? (gr_pytimer *)Py_NewRef((PyObject *)t) : t;
    t->rec = rec;
    timer_add(rec);
    return 0;
}

static PyObject *
pytimer_make(PyTypeObject *type, double d, PyObject *f, double period)
{
    gr_pytimer *t = (gr_pytimer *)type->tp_alloc(type, 0);
    if (t == NULL) {
        return NULL;
    }
    t->f = f != Py_None ? Py_NewRef(f) : NULL;
    t->period = period;
    if (t->f == NULL) {
        /* One slot: the fire never blocks the loop thread, and len/cap
         * hide it (gr_chan_set_timer). */
        t->c = PyObject_CallFunction((PyObject *)gr_globals.chan_type, "n",
                                     (Py_ssize_t)1);
        if (t->c == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        hchan *c;
        int dir;
        gr_chan_unwrap(t->c, &c, &dir);
        gr_chan_set_timer(c, (PyObject *)t);
    }
    if (pytimer_start(t, d) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

static PyObject *
pytimer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"d", "f", "period", NULL};
    double d, period = 0;
    PyObject *dobj, *f = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|Od:_timer", kwlist,
                                     &dobj, &f, &period)) {
        return NULL;
    }
    if (seconds_arg(dobj, "duration", &d) < 0) {
        return NULL;
    }
    return pytimer_make(type, d, f, period);
}


static PyObject *
pytimer_stop_m(gr_pytimer *t, PyObject *unused)
{
    return PyBool_FromLong(pytimer_stop(t));
}

static PyObject *
pytimer_reset_m(gr_pytimer *t, PyObject *arg)
{
    double d;
    if (seconds_arg(arg, "duration", &d) < 0) {
        return NULL;
    }
    bool active = pytimer_stop(t);
    if (pytimer_start(t, d) < 0) {
        return NULL;
    }
    return PyBool_FromLong(active);
}

static PyObject *
pytimer_set_period(gr_pytimer *t, PyObject *arg)
{
    double p = PyFloat_AsDouble(arg);
    if (p == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    t->period = p;
    Py_RETURN_NONE;
}

static PyObject *
pytimer_get_c(gr_pytimer *t, void *unused)
{
    return Py_NewRef(t->c != NULL ? t->c : gr_globals.nilchan);
}

static int
pytimer_traverse(gr_pytimer *t, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(t));
    Py_VISIT(t->c);
    Py_VISIT(t->f);
    return 0;
}

static int
pytimer_clear(gr_pytimer *t)
{
    Py_CLEAR(t->c);
    Py_CLEAR(t->f);
    return 0;
}

static void
pytimer_dealloc(gr_pytimer *t)
{
    PyTypeObject *tp = Py_TYPE(t);
    PyObject_GC_UnTrack(t);
    /* Only a channel timer can still be pending here (its record holds us
     * weakly): disown and unheap it before anything that can release the
     * GIL and let the loop thread fire it. */
    if (t->rec != NULL) {
        gr_timer_rec *rec = t->rec;
        t->rec = NULL;
        rec_disown(rec);
        timer_del(rec);
        rec_unref(rec);
    }
    pytimer_clear(t);
    tp->tp_free(t);
    Py_DECREF(tp);
}

static PyMethodDef pytimer_methods[] = {
    {"stop", (PyCFunction)pytimer_stop_m, METH_NOARGS,
     "stop($self, /)\n--\n\nStop; True if the timer was active."},
    {"reset", (PyCFunction)pytimer_reset_m, METH_O,
     "reset($self, d, /)\n--\n\nRestart to fire after d seconds; True if "
     "it was active."},
    {"_set_period", (PyCFunction)pytimer_set_period, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef pytimer_getset[] = {
    {"c", (getter)pytimer_get_c, NULL,
     "The channel the time is sent on; nilchan for a func timer.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot pytimer_slots[] = {
    {Py_tp_doc, "_timer(d, f=None, period=0)\n--\n\n"
                "The C half of goroutine.time.Timer and Ticker."},
    {Py_tp_new, pytimer_new},
    {Py_tp_dealloc, pytimer_dealloc},
    {Py_tp_traverse, pytimer_traverse},
    {Py_tp_clear, pytimer_clear},
    {Py_tp_methods, pytimer_methods},
    {Py_tp_getset, pytimer_getset},
    {0, NULL},
};

static PyType_Spec pytimer_spec = {
    .name = "goroutine._core._timer",
    .basicsize = sizeof(gr_pytimer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = pytimer_slots,
};

static PyMethodDef timer_methods[] = {
    {"sleep", timer_sleep, METH_O,
     "sleep(d, /)\n--\n\n"
     "Park the calling goroutine (or block the thread, interruptibly) for "
     "d seconds."},
    {"_seconds", (PyCFunction)(void (*)(void))timer_seconds, METH_FASTCALL,
     "_seconds(d, what='duration', /)\n--\n\n"
     "d as float seconds: TypeError for a non-number, ValueError for NaN."},
    {NULL, NULL, 0, NULL},
};

/* Module init, staging (state.h): the _timer type. */
int
gr_timer_init(gr_globals_t *st)
{
    st->timer_type = (PyTypeObject *)PyType_FromSpec(&pytimer_spec);
    return st->timer_type == NULL ? -1 : 0;
}

int
gr_timer_exec(PyObject *module)
{
    if (PyModule_AddObjectRef(module, "_timer",
                              (PyObject *)gr_globals.timer_type) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, timer_methods);
}
