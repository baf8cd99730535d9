/*
 * sched.c: Go's scheduler (G, M, P) for Python callables.
 *
 * G is a goroutine: a C stack (gstack.c) and its own PyThreadState
 * (pystate.c).  M is an OS thread made by the runtime; its native stack is
 * g0, where this file's scheduler loop runs, always WITHOUT the GIL.  P is
 * a scheduling context with a local run queue; there are GOMAXPROCS of
 * them, and an M runs goroutines only while it holds one.
 *
 * Running a goroutine (execute): take the GIL with the G's thread state
 * (gr_pystate_enter), switch stacks, and when the G comes back (it parked,
 * yielded or finished) give the GIL back (gr_pystate_leave) BEFORE running
 * the park's unlock function.  So a G is published to wakers only once its
 * stack and thread state are off the CPU, and no thread state is ever
 * current on two OS threads.
 *
 * Invariants and ownership:
 *   - p->status: P_IDLE (on sched.pidle, or being handed over), P_SCHED
 *     (its M is in the scheduler), P_RUNG (its M runs a G), P_DEAD (out
 *     of use: id >= gomaxprocs, on no list, owned by nobody, queues
 *     empty).  Only sysmon and gomaxprocs move P_RUNG -> P_IDLE (retake,
 *     CAS); the M moves P_RUNG -> P_SCHED by CAS when its G comes back,
 *     and learns from a failed CAS that it lost the P.
 *   - gomaxprocs (Go's procresize): P_DEAD is entered and left only under
 *     sched.lock, and gomaxprocs only changes under sched.lock, so at every
 *     moment a P is either in circulation (owned, listed or handed over,
 *     exactly one of them) or dead, never both.  A shrink kills the idle
 *     Ps beyond n and retakes the ones whose G is off the GIL; every other
 *     P beyond n is killed by whoever next gives it up (pidleput_locked,
 *     or findrunnable's check).  Killing moves the P's queued Gs to the
 *     global queue.  A grow relists only dead Ps: a P in flight to an M
 *     is still in circulation and stays with that M.
 *   - Run queue puts (runqput) are owner-only, as in Go: either the M in
 *     the scheduler holding the P, or code on a G that holds the GIL and
 *     sees p->m == its M.  An M that receives a P retaken from another M
 *     first passes a GIL barrier (acquire + release), so any put the old
 *     M's G began under the GIL has finished and later ones see the new
 *     owner.  Gets and steals are lock-free CASes on runqhead.
 *   - nactive counts Gs that are runnable or running (including ones
 *     inside a blocking call); it reaches 0 only when every G is parked.
 *     The deadlock check builds on that.
 *   - sched.hand (preemption, 3.12+): names a P whose M waits to take the
 *     GIL for a G (handed over for it, or entering execute), and which
 *     hand-off this is (a generation: the same P handed again is another
 *     hand-off); set only while 0, cleared once that M has the GIL or the
 *     P goes idle or dies.
 *     While set, a thread that holds the GIL lets it go at its next safe
 *     point when asked, and waits for the clear.  A G never runs on
 *     another G's M in between: a preempted G keeps its M and OS thread.
 *
 * Lock order: channel locks, then sched.lock; pool locks and
 * sched.handmu are leaves.
 * Never call Python or take the GIL while holding sched.lock.
 *
 * Waking: a G readied or created by a goroutine goes to that M's runnext
 * (so a ping-pong pair stays on one M and never touches the OS), and no
 * other M is woken for it: under the GIL a second M running Python only
 * contends (every goroutine switch drops the GIL and wakes the other M).
 * Work spreads when it pays: sysmon hands the P to another M as soon as
 * its goroutine is seen inside a GIL-releasing call, or after 5 ms of
 * Python.  From any other thread a G goes to the global queue and an idle
 * M is woken.  An idle M spins briefly (GR_SPIN_NS) before sleeping: a
 * futex round trip costs ~40 us here, a spinning handoff well under 1 us.
 *
 * sysmon: a thread with no P and no GIL.  When a P has runnable work
 * waiting and has run the same G either for two ticks with that G's thread
 * state detached (it is inside a GIL-releasing blocking call: ~0.2 ms) or
 * for GR_RETAKE_NS of Python (CPU-bound), sysmon retakes the P and hands it
 * to an idle or new M (the seed's chapter 2, steps 5-6).  The old M's G goes on;
 * when it next enters the scheduler its M finds no P, takes an idle one or
 * goes to sleep.  With preemption (3.12+, "preemption" below) the retake
 * is a hand-off for the GIL: the G holding it steps aside at its next safe
 * point; a G in the global queue that no idle P or spinning M takes gets
 * a P after one tick, not a slice; and a G that held the GIL recently
 * counts as running Python even when seen detached (it is then waiting
 * for the GIL).
 */
#define _GNU_SOURCE 1
#include "core.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <unistd.h>

/* Sizes and times, with why. */
#define GR_RUNQ 256                 /* Go's local run queue size */
#define GR_GLOBAL_TICK 61           /* check the global queue every 61 */
#define GR_SPIN_NS 50000            /* idle M spin before sleeping */
#define GR_RETAKE_NS 5000000        /* = CPython's switch interval */
#define GR_PYBUSY_NS 20000000       /* a G seen holding the GIL this
                                       recently runs Python (sched.pybusy):
                                       4 switch intervals */
#define GR_SYSMON_BUSY_US 100       /* sysmon tick while goroutines run */
#define GR_SYSMON_CALM_US 1000      /* ... and its longest while they only
                                       run: nothing queued, no hand-off */
#define GR_MAXM_DEFAULT 10000       /* Go's default thread limit */
#define GR_GFREE_LOCAL 64           /* dead Gs kept per P (Go's 64) */
#define GR_GFREE_GLOBAL 1024        /* ... and globally, equipped */
#define GR_SCAVENGE_NS 1000000000   /* idle M strips the excess after */
#define GR_NETPOLL_NS 10000000      /* sysmon polls the network if nobody
                                       has for this long (Go's 10 ms) */

enum { G_IDLE, G_RUNNABLE, G_RUNNING, G_WAITING, G_DEAD };
enum { P_IDLE, P_SCHED, P_RUNG, P_DEAD };
enum { EXIT_PARK = 1, EXIT_YIELD, EXIT_DEAD };

struct gr_g {
    gr_ctx ctx;                 /* saved registers while off-CPU */
    gr_stack stack;
    uint64_t goid;
    atomic_int status;          /* G_* */
    int exitkind;               /* why it switched to g0 (EXIT_*) */
    const char *waitreason;     /* for stack(): "chan receive", ... */
    gr_g *schedlink;            /* global run queue / free list link */
    gr_g *allnext;              /* allg list, under sched.lock */
    PyThreadState *tstate;      /* its own thread state, pooled with it */
    int fit_limit;              /* recursion limit its budget fits */
    PyObject *fn;               /* callable, args, kwargs until it runs */
    PyObject *args;
    PyObject *kwargs;
    PyObject *context;          /* contextvars copy of its creator's */
    gr_m *m;                    /* M running it, when running */
    void (*unlockf)(void *);    /* park: runs on g0 after leave */
    void *unlockarg;
    gr_m *lockedm;              /* lock_os_thread: only this M runs it */
    int lockcount;              /* nesting of lock_os_thread */
    unsigned forkgen;           /* gr_forkgen it belongs to: an older one
                                   is a ghost, a goroutine of the parent
                                   in a forked child (never run, readied,
                                   claimed or reused) */
};

struct gr_m {
    pthread_t thread;
    int id;
    gr_ctx g0ctx;               /* the scheduler's saved registers */
    void *g0fake;               /* ASan fake stack of g0 across a switch */
    char *g0lo;                 /* g0 stack bounds, for ASan */
    size_t g0size;
    void *g0fiber;              /* TSan fiber of g0 (the thread itself) */
    PyThreadState *tstate;      /* the M's own thread state */
    gr_p *p;                    /* attached P, or NULL */
    gr_p *nextp;                /* P handed over while it slept */
    bool barrier;               /* nextp was retaken: pass a GIL barrier */
    gr_g *curg;                 /* G running on it, or NULL on g0 */
    bool spinning;              /* looking for work, counted in nmspinning */
    gr_m *schedlink;            /* idle M list */
    gr_sema park;               /* sleeps here when idle */
    gr_g *lockedg;              /* the G locked to this M, if any */
    bool lockedresume;          /* lockedg yielded: run it again directly
                                   (it is on no queue) */
    unsigned long ident;        /* its thread ident, set by mstart */
    unsigned long long gilhand; /* sched.hand when its G last took the
                                   GIL in execute (preempt_cb) */
    gr_m *alllink;              /* allm list, under sched.lock */
};

struct gr_p {
    int id;
    atomic_int status;          /* P_* */
    _Atomic(gr_m *) m;          /* owner M */
    atomic_uint schedtick;      /* bumped per G run */
    atomic_uint runqhead;       /* consumers CAS this */
    atomic_uint runqtail;       /* only the owner stores this */
    _Atomic(gr_g *) runq[GR_RUNQ];
    _Atomic(gr_g *) runnext;    /* the G to run next, owner sets */
    gr_p *link;                 /* idle list, under sched.lock */
    gr_g *gfree;                /* dead Gs for reuse, owner only */
    int ngfree;
    _Atomic(gr_g *) curg;       /* the G its M runs, for sysmon */
    unsigned sysmontick;        /* sysmon's last view of schedtick */
    int64_t sysmonwhen;         /* when sysmon saw it change */
    bool sysmondetached;        /* sysmon saw that G detached last tick */
    int64_t lastattached;       /* sysmon: when it last saw that G hold
                                   the GIL (0: not since it started) */
};

static struct {
    pthread_mutex_t lock;
    gr_g *runqhead;             /* global run queue, under lock */
    gr_g *runqtail;
    atomic_int runqsize;
    gr_m *midle;                /* idle Ms, under lock */
    gr_m *allm;                 /* every M that started, under lock */
    int nmidle;
    int mcount;                 /* Ms made */
    int maxmcount;
    gr_p *pidle;                /* idle Ps, under lock */
    atomic_int npidle;
    atomic_int nmspinning;
    gr_p **allp;                /* every P ever made (gomaxprocs can grow) */
    atomic_int nallp;           /* allp[0..nallp) are set: stored (under
                                   lock) after the allp[i] it covers, read
                                   without the lock by steal_work */
    atomic_int gomaxprocs;
    gr_g *gfree;                /* dead Gs for reuse, under lock */
    int ngfree;                 /* <= GR_GFREE_GLOBAL */
    gr_g *gfreebare;            /* dead Gs without stack or thread state
                                   (3.15: an M-named one keeps it) */
    int ngfreebare;
    gr_g *allg;                 /* every G made, under lock */
    atomic_ullong goidgen;
    atomic_llong nactive;       /* runnable + running Gs */
    atomic_llong ngoroutines;   /* not dead */
    atomic_ullong epoch;        /* bumps on every go() and ready() */
    atomic_int nthreadblocked;  /* plain threads blocked in the runtime */
    atomic_int nunlocking;      /* Ms between giving the GIL back and the
                                   end of the park's unlock (may hold a
                                   channel or sync lock): fork waits for 0 */
    gr_g *forkg;                /* in a child forked by a goroutine: that
                                   goroutine, the child's main one */
    atomic_bool started;
    atomic_bool exiting;
    pthread_t sysmon;
    atomic_bool sysmonup;       /* sysmon runs (false in a forked child
                                   until its first go(), and once it left
                                   at finalization) */
    atomic_ullong sysmonseq;    /* odd while sysmon is in a pass (it may
                                   hold a G pointer then: gfscavenge) */
    PyInterpreterState *interp;
    atomic_bool preemptposted;  /* a preemption request is queued */
    atomic_int nmpless;         /* Ms whose G goes on after its P was
                                   retaken (a hint for sysmon) */
    atomic_bool pybusy;         /* sysmon: some P's G held the GIL within
                                   GR_PYBUSY_NS (it runs Python) */
    atomic_bool preemptoff;     /* GODEBUG=asyncpreemptoff=1, or 3.10/
                                   3.11; set by sched_start, read by any
                                   thread (true until then) */
    /* Preemption by GIL hand-off ("preemption" below).  hand names the P
     * handed to an M for a G that waits for the GIL, as HAND_TOKEN(gen,
     * p): set by the hand-off, cleared (CAS) when that M's first G took
     * the GIL, when the P goes idle or dies, or by a step-aside that
     * timed out.  While it is set, a thread that holds the GIL at a safe
     * point lets it go and waits on handcond (under handmu, a leaf lock)
     * until it changes.  The generation keeps a waiter that has not yet
     * seen one hand-off of p end from taking the next one of p for it
     * (and clearing that one when its wait times out). */
    atomic_ullong hand;         /* 0: none */
    atomic_ullong handgen;      /* hand-offs claimed so far */
    pthread_mutex_t handmu;
    pthread_cond_t handcond;    /* CLOCK_MONOTONIC, made by sched_start */
    /* sysmon's long sleep: while every P runs and nothing is queued or
     * handed, sysmon's tick backs off to GR_SYSMON_CALM_US (as Go's
     * sysmon doubles its delay while it finds nothing to do), sleeping on
     * sysmoncond with sysmoncalm set; a hand-off claimed meanwhile wakes
     * it (hand_claim), so the re-ask of a standing hand-off still comes
     * a busy tick later.  sysmonmu is a leaf. */
    atomic_bool sysmoncalm;
    pthread_mutex_t sysmonmu;
    pthread_cond_t sysmoncond;  /* CLOCK_MONOTONIC */
    /* the netpoller (netpoll.c, through gr_sched_set_netpoll) */
    const gr_netpoll_ops *_Atomic netpoll;  /* NULL until registered */
    atomic_bool netpolling;     /* an M is blocked in the poll; set and
                                   cleared by that M, cleared under lock
                                   (startm reads it under lock) */
    atomic_llong lastpoll;      /* when anyone last polled (sysmon) */
    /* stats */
    atomic_ullong ncreated, nsteals, nhandoffs, nswitches, npreempts;
    /* preempt_cb's outcomes (_core._preempt_stats, for tests): steps
     * aside; of those, ones by a G whose own execute saw the hand-off
     * standing (gilhand: never, by design); waits that timed out; of
     * those, ones after which the hand-off still stood; holders that
     * did not step aside because they took the GIL while it stood. */
    atomic_ullong nstepaside, nstepaside_own, nstepaside_timeout,
        nstepaside_stood, nhand_own;
    /* test-only: how long a step-aside waits (0: GR_RETAKE_NS) */
    atomic_llong stepaside_ns;
} sched = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .maxmcount = GR_MAXM_DEFAULT,
    .preemptoff = true,         /* until sched_start reads GODEBUG */
    .handmu = PTHREAD_MUTEX_INITIALIZER,
};

static __thread gr_m *tls_m;

/* The M of this OS thread.  Never inlined and never cached across a park:
 * a goroutine can resume on another OS thread. */
__attribute__((noinline)) static gr_m *
getm(void)
{
    gr_m *m = tls_m;
    __asm__ volatile("" ::: "memory");
    return m;
}

gr_g *
gr_getg(void)
{
    gr_m *m = getm();
    return m != NULL ? m->curg : NULL;
}

gr_stack *
gr_g_stack(gr_g *g)
{
    return &g->stack;
}

/* gstack.c's fault handler asks this, on the faulting M: plain reads. */
static gr_stack *
fault_curg(void *mp, uint64_t *goid, PyThreadState **ts)
{
    gr_g *g = ((gr_m *)mp)->curg;
    if (g == NULL) {
        return NULL;
    }
    *goid = g->goid;
    *ts = g->tstate;
    return &g->stack;
}

bool
gr_g_ghost(gr_g *g)
{
    return g->forkgen != atomic_load_explicit(&gr_forkgen,
                                              memory_order_relaxed);
}

/* The P that code running on a goroutine may use as its owner (runqput,
 * gfree), or NULL on a plain thread or after sysmon retook it.  GIL held
 * (see the header: the GIL orders this check against a retake). */
static gr_p *
current_p(void)
{
    gr_m *m = getm();
    if (m == NULL || m->curg == NULL || m->p == NULL) {
        return NULL;
    }
    gr_p *p = m->p;
    if (atomic_load(&p->m) == m && atomic_load(&p->status) == P_RUNG) {
        return p;
    }
    return NULL;
}

static gr_p *pidleget_locked(void);
static void thread_locks_init(void);

/* current_p(), and if this goroutine's M has lost its P (sysmon retook it
 * while the goroutine was in a GIL-releasing call), take an idle one:
 * Go's exitsyscall fast path, run at the next runtime operation.  Without
 * it, a goroutine that came back from a blocking call would ready every G
 * through the global queue, waking an M each time.  GIL held. */
static gr_p *
reacquire_p(void)
{
    gr_p *p = current_p();
    if (p != NULL) {
        return p;
    }
    gr_m *m = getm();
    if (m == NULL || m->curg == NULL || atomic_load(&sched.npidle) == 0) {
        return NULL;
    }
    pthread_mutex_lock(&sched.lock);
    p = pidleget_locked();
    pthread_mutex_unlock(&sched.lock);
    if (p == NULL) {
        return NULL;
    }
    /* An idle P has no other owner: no barrier is needed. */
    atomic_fetch_sub(&sched.nmpless, 1);
    m->p = p;
    atomic_store(&p->m, m);
    atomic_store(&p->curg, m->curg);
    atomic_store(&p->status, P_RUNG);
    return p;
}

static int64_t
nanotime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static __thread uint32_t tls_rand;

uint32_t
gr_fastrand(void)
{
    uint32_t x = tls_rand;
    if (x == 0) {
        x = (uint32_t)nanotime() ^ (uint32_t)(uintptr_t)&x ^ 0x9E3779B9u;
        if (x == 0) {
            x = 1;
        }
    }
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    tls_rand = x;
    return x;
}

/* An M (or a thread the scheduler makes wait) sleeps on its semaphore
 * (sema.c), without the GIL. */
static bool
msleep(gr_sema *s, int64_t timeout_ns)
{
    return gr_sema_wait(s, timeout_ns);
}

static void handoff_over(gr_p *p);
static void gil_wanted(gr_p *p);

/* ---- run queues (Go's runqput / runqget / runqgrab) ---------------- */

static void globrunqput(gr_g *g);

/* Put g on p's local queue; next: into runnext, kicking the old one to
 * the tail.  Owner only (see the header).  Overflow moves half the queue
 * to the global queue.  Returns true if the queue had other work. */
static bool
runqput(gr_p *p, gr_g *g, bool next)
{
    if (next) {
        gr_g *old = atomic_exchange(&p->runnext, g);
        if (old == NULL) {
            return false;
        }
        g = old;
    }
    for (;;) {
        unsigned h = atomic_load_explicit(&p->runqhead, memory_order_acquire);
        unsigned t = atomic_load_explicit(&p->runqtail, memory_order_relaxed);
        if (t - h < GR_RUNQ) {
            atomic_store_explicit(&p->runq[t % GR_RUNQ], g,
                                  memory_order_relaxed);
            atomic_store_explicit(&p->runqtail, t + 1, memory_order_release);
            return true;
        }
        /* Full: move half of it plus g to the global queue. */
        unsigned n = (t - h) / 2;
        gr_g *batch[GR_RUNQ / 2 + 1];
        for (unsigned i = 0; i < n; i++) {
            batch[i] = atomic_load_explicit(&p->runq[(h + i) % GR_RUNQ],
                                            memory_order_relaxed);
        }
        if (!atomic_compare_exchange_strong_explicit(
                &p->runqhead, &h, h + n, memory_order_release,
                memory_order_relaxed)) {
            continue;       /* a consumer moved the head: try again */
        }
        batch[n] = g;
        pthread_mutex_lock(&sched.lock);
        for (unsigned i = 0; i <= n; i++) {
            batch[i]->schedlink = NULL;
            if (sched.runqtail) {
                sched.runqtail->schedlink = batch[i];
            }
            else {
                sched.runqhead = batch[i];
            }
            sched.runqtail = batch[i];
        }
        atomic_fetch_add(&sched.runqsize, (int)n + 1);
        pthread_mutex_unlock(&sched.lock);
        return true;
    }
}

static gr_g *
runqget(gr_p *p)
{
    gr_g *next = atomic_load(&p->runnext);
    if (next != NULL &&
        atomic_compare_exchange_strong(&p->runnext, &next, NULL)) {
        return next;
    }
    for (;;) {
        unsigned h = atomic_load_explicit(&p->runqhead, memory_order_acquire);
        unsigned t = atomic_load_explicit(&p->runqtail, memory_order_acquire);
        if (t == h) {
            return NULL;
        }
        gr_g *g = atomic_load_explicit(&p->runq[h % GR_RUNQ],
                                       memory_order_relaxed);
        if (atomic_compare_exchange_strong_explicit(
                &p->runqhead, &h, h + 1, memory_order_release,
                memory_order_relaxed)) {
            return g;
        }
    }
}

static bool
runqempty(gr_p *p)
{
    return atomic_load(&p->runqhead) == atomic_load(&p->runqtail) &&
           atomic_load(&p->runnext) == NULL;
}

/* Steal half of victim's queue into batch; returns the count. */
static unsigned
runqgrab(gr_p *victim, gr_g **batch, bool stealnext)
{
    for (;;) {
        unsigned h = atomic_load_explicit(&victim->runqhead,
                                          memory_order_acquire);
        unsigned t = atomic_load_explicit(&victim->runqtail,
                                          memory_order_acquire);
        unsigned n = t - h;
        n = n - n / 2;
        if (n == 0) {
            if (stealnext) {
                gr_g *next = atomic_load(&victim->runnext);
                if (next != NULL && atomic_compare_exchange_strong(
                        &victim->runnext, &next, NULL)) {
                    batch[0] = next;
                    return 1;
                }
            }
            return 0;
        }
        if (n > GR_RUNQ / 2) {
            continue;   /* read an inconsistent h and t */
        }
        for (unsigned i = 0; i < n; i++) {
            batch[i] = atomic_load_explicit(&victim->runq[(h + i) % GR_RUNQ],
                                            memory_order_relaxed);
        }
        if (atomic_compare_exchange_strong_explicit(
                &victim->runqhead, &h, h + n, memory_order_release,
                memory_order_relaxed)) {
            return n;
        }
    }
}

/* sched.lock held. */
static gr_g *
globrunqget_locked(gr_p *p, int max)
{
    int size = atomic_load(&sched.runqsize);
    if (size == 0) {
        return NULL;
    }
    int n = size / atomic_load(&sched.gomaxprocs) + 1;
    if (n > size) {
        n = size;
    }
    if (max > 0 && n > max) {
        n = max;
    }
    if (n > GR_RUNQ / 2) {
        n = GR_RUNQ / 2;
    }
    gr_g *g = sched.runqhead;
    sched.runqhead = g->schedlink;
    int taken = 1;
    while (taken < n) {
        gr_g *more = sched.runqhead;
        sched.runqhead = more->schedlink;
        runqput(p, more, false);
        taken++;
    }
    if (sched.runqhead == NULL) {
        sched.runqtail = NULL;
    }
    atomic_fetch_sub(&sched.runqsize, taken);
    return g;
}

static void
globrunqput(gr_g *g)
{
    g->schedlink = NULL;
    pthread_mutex_lock(&sched.lock);
    if (sched.runqtail) {
        sched.runqtail->schedlink = g;
    }
    else {
        sched.runqhead = g;
    }
    sched.runqtail = g;
    atomic_fetch_add(&sched.runqsize, 1);
    pthread_mutex_unlock(&sched.lock);
}

/* p goes out of use (gomaxprocs shrank below its id): move its runnable
 * Gs, runnext first, to the global queue (Go's procresize does the same
 * for a destroyed P), its dead Gs to the global free list, and mark it
 * P_DEAD.  sched.lock held; the caller owns p (or took it off the idle
 * list), so nobody puts to its queue; stealers still may take from it,
 * which runqget's CAS allows.  Returns how many Gs moved. */
static int
pdestroy_locked(gr_p *p)
{
    int moved = 0;
    gr_g *g;
    while ((g = runqget(p)) != NULL) {
        g->schedlink = NULL;
        if (sched.runqtail) {
            sched.runqtail->schedlink = g;
        }
        else {
            sched.runqhead = g;
        }
        sched.runqtail = g;
        moved++;
    }
    atomic_fetch_add(&sched.runqsize, moved);
    while (p->gfree != NULL) {
        g = p->gfree;
        p->gfree = g->schedlink;
        g->schedlink = sched.gfree;
        sched.gfree = g;
        sched.ngfree++;
    }
    p->ngfree = 0;
    atomic_store(&p->curg, NULL);
    atomic_store(&p->m, NULL);
    atomic_store(&p->status, P_DEAD);
    handoff_over(p);
    return moved;
}

/* ---- Ms and Ps ------------------------------------------------------ */

static void *mstart(void *arg);

/* sched.lock held. */
static gr_p *
pidleget_locked(void)
{
    gr_p *p = sched.pidle;
    if (p != NULL) {
        sched.pidle = p->link;
        atomic_fetch_sub(&sched.npidle, 1);
    }
    return p;
}

/* sched.lock held.  The caller gives p up (it owned it or had it handed
 * over).  A P beyond gomaxprocs is not listed but killed. */
static void
pidleput_locked(gr_p *p)
{
    if (p->id >= atomic_load(&sched.gomaxprocs)) {
        pdestroy_locked(p);
        return;
    }
    atomic_store(&p->m, NULL);
    atomic_store(&p->status, P_IDLE);
    handoff_over(p);        /* handed for the GIL, but no G ran on it */
    p->link = sched.pidle;
    sched.pidle = p;
    atomic_fetch_add(&sched.npidle, 1);
}

static void
acquirep(gr_m *m, gr_p *p)
{
    m->p = p;
    atomic_store(&p->m, m);
    atomic_store(&p->status, P_SCHED);
}

/* Wake or make an M to run p (p NULL: any idle P).  spinning: the M is
 * counted in nmspinning by the caller. */
static void
startm(gr_p *p, bool spinning, bool barrier)
{
    /* Only for any idle P: a P handed over (a retake) must go to an M. */
    bool wake_poller = p == NULL;
    pthread_mutex_lock(&sched.lock);
    if (p == NULL) {
        p = pidleget_locked();
        if (p == NULL) {
            pthread_mutex_unlock(&sched.lock);
            if (spinning) {
                atomic_fetch_sub(&sched.nmspinning, 1);
            }
            return;
        }
    }
    gr_m *m = sched.midle;
    if (m != NULL) {
        sched.midle = m->schedlink;
        sched.nmidle--;
        pthread_mutex_unlock(&sched.lock);
        m->spinning = spinning;
        m->nextp = p;
        m->barrier = barrier;
        gr_sema_post(&m->park);
        return;
    }
    if (wake_poller && atomic_load(&sched.netpolling)) {
        /* An M is blocked in the netpoller with no P: wake it to take
         * this one rather than make a thread (Go's wakeNetPoller).  Under
         * sched.lock: that M clears netpolling, then takes an idle P,
         * under it too, so it finds p. */
        pidleput_locked(p);
        pthread_mutex_unlock(&sched.lock);
        if (spinning) {
            atomic_fetch_sub(&sched.nmspinning, 1);
        }
        const gr_netpoll_ops *ops = atomic_load(&sched.netpoll);
        ops->wakeup();
        return;
    }
    if (sched.mcount >= sched.maxmcount) {
        /* Go throws here; we keep the P idle and let running Ms serve it. */
        pidleput_locked(p);
        pthread_mutex_unlock(&sched.lock);
        if (spinning) {
            atomic_fetch_sub(&sched.nmspinning, 1);
        }
        return;
    }
    int id = sched.mcount++;
    pthread_mutex_unlock(&sched.lock);

    m = calloc(1, sizeof *m);
    if (m == NULL) {
        Py_FatalError("goroutine: out of memory making an M");
    }
    m->id = id;
    m->spinning = spinning;
    m->nextp = p;
    m->barrier = barrier;
    gr_sema_init(&m->park);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1024 * 1024);
    if (pthread_create(&m->thread, &attr, mstart, m) != 0) {
        Py_FatalError("goroutine: cannot create an OS thread for an M");
    }
    pthread_attr_destroy(&attr);
}

/* Wake an idle M to look for work, if there is an idle P and nobody is
 * already looking (Go's wakep). */
static void
wakep(void)
{
    if (atomic_load(&sched.npidle) == 0) {
        return;
    }
    int zero = 0;
    if (atomic_load(&sched.nmspinning) != 0 ||
        !atomic_compare_exchange_strong(&sched.nmspinning, &zero, 1)) {
        return;
    }
    startm(NULL, true, false);
}

/* The interpreter is finalizing: this M must never touch Python again
 * (taking the GIL would end the thread inside CPython, and every thread
 * state but the finalizing thread's is being freed).  Stop the runtime and
 * sleep until the process ends.  No GIL, no runtime lock held. */
_Noreturn static void
abandonm(void)
{
    atomic_store(&sched.exiting, true);
    gr_sema s;
    gr_sema_init(&s);
    for (;;) {
        gr_sema_wait(&s, -1);
    }
}

/* Acquire the P another thread handed this M (m->nextp).  If it was
 * retaken from an M whose G may still be inside a runqput under the GIL,
 * first wait that out with a GIL barrier (see the header).  No GIL. */
static void
take_nextp(gr_m *m)
{
    gr_p *p = m->nextp;
    m->nextp = NULL;
    if (m->barrier) {
        m->barrier = false;
        if (gr_pystate_finalizing()) {
            abandonm();
        }
        PyEval_RestoreThread(m->tstate);
        PyEval_SaveThread();
    }
    acquirep(m, p);
}

/* Sleep until handed a P.  No GIL, no P. */
static bool gfsurplus(void);
static void gfscavenge(gr_m *m);

static void
stopm(gr_m *m)
{
    if (m->spinning) {
        /* It lost its P while spinning (a shrink killed it): it stops
         * looking for work, or wakep would believe someone still looks
         * and wake nobody for good.  Go throws "stopm spinning"; here the
         * shrink path reaches it legitimately. */
        m->spinning = false;
        atomic_fetch_sub(&sched.nmspinning, 1);
    }
    pthread_mutex_lock(&sched.lock);
    m->schedlink = sched.midle;
    sched.midle = m;
    sched.nmidle++;
    pthread_mutex_unlock(&sched.lock);
    for (;;) {
        /* An M idle for GR_SCAVENGE_NS while dead Gs beyond the bound
         * hold memory gives it back (gfscavenge): a burst's memory returns
         * about a second after it ends, and a steady go() loop that keeps
         * the Ms busy reuses the Gs instead. */
        bool posted = msleep(&m->park, gfsurplus() ? GR_SCAVENGE_NS : -1);
        if (atomic_load(&sched.exiting)) {
            continue;       /* abandoned at exit: never touch Python */
        }
        if (m->nextp != NULL) {
            break;
        }
        if (!posted) {
            gfscavenge(m);
        }
    }
    take_nextp(m);
}

/* ---- finding work ---------------------------------------------------- */

static gr_g *
steal_work(gr_m *m, gr_p *p)
{
    /* Acquire: pairs with the store in gomaxprocs, so every allp[i] below
     * n is visible here (a plain read raced with that store, and on a
     * weakly ordered CPU could see the new n but a NULL allp[i]). */
    int n = atomic_load_explicit(&sched.nallp, memory_order_acquire);
    gr_g *batch[GR_RUNQ / 2];
    for (int round = 0; round < 4; round++) {
        unsigned start = gr_fastrand();
        for (int i = 0; i < n; i++) {
            gr_p *victim = sched.allp[(start + (unsigned)i) % (unsigned)n];
            if (victim == p || victim->id >= atomic_load(&sched.gomaxprocs)) {
                continue;
            }
            unsigned got = runqgrab(victim, batch, round == 3);
            if (got > 0) {
                atomic_fetch_add(&sched.nsteals, 1);
                for (unsigned k = 1; k < got; k++) {
                    runqput(p, batch[k], false);
                }
                return batch[0];
            }
        }
    }
    return NULL;
}

static bool
any_runq_nonempty(void)
{
    int n = atomic_load(&sched.gomaxprocs);
    for (int i = 0; i < n; i++) {
        if (!runqempty(sched.allp[i])) {
            return true;
        }
    }
    return atomic_load(&sched.runqsize) > 0;
}

static void
resetspinning(gr_m *m)
{
    m->spinning = false;
    if (atomic_fetch_sub(&sched.nmspinning, 1) == 1) {
        /* The last spinner found work: maybe there is more. */
        wakep();
    }
}

/* ---- the netpoller's hooks ------------------------------------------
 *
 * netpoll.c sits above this file (it parks through waiter.c), so it hands
 * its poll and wakeup functions over at init.  As in Go's findrunnable:
 * an M with no work polls without blocking; an M about to sleep blocks in
 * the poll instead, if no other M does (sched.netpolling); sysmon polls
 * when nobody has for GR_NETPOLL_NS.  Readied goroutines come back as a
 * list (glist_inject) and are spread by injectglist.  Only while some
 * goroutine waits on the network (gr_netwaiters): otherwise the Ms sleep
 * on their semaphores as before.
 */

void
gr_sched_set_netpoll(const gr_netpoll_ops *ops)
{
    atomic_store(&sched.netpoll, ops);
}

/* Whether an M is blocked in the poll (or about to be).  The last network
 * waiter to leave asks, after its decrement of gr_netwaiters, and wakes
 * that M, which then sleeps on its semaphore like any idle M: it set the
 * flag before reading the count (netpoll_into), so one of the two sees
 * the other (both seq_cst). */
bool
gr_sched_netpolling(void)
{
    return atomic_load(&sched.netpolling);
}

typedef struct {
    gr_g *head, *tail;
    int n;
} glist;

/* The poll's inject: a claimed G becomes runnable, onto the list. */
static void
glist_inject(gr_g *g, void *ctx)
{
    glist *l = ctx;
    if (gr_g_ghost(g)) {
        return;
    }
    atomic_store(&g->status, G_RUNNABLE);
    atomic_fetch_add(&sched.nactive, 1);
    atomic_fetch_add(&sched.epoch, 1);
    g->schedlink = NULL;
    *(l->tail != NULL ? &l->tail->schedlink : &l->head) = g;
    l->tail = g;
    l->n++;
}

/* Poll (delay as gr_netpoll_ops.poll) if anyone waits on the network;
 * the readied Gs onto l.  No GIL, no lock. */
static void
netpoll_into(int64_t delay_ns, glist *l)
{
    const gr_netpoll_ops *ops = atomic_load(&sched.netpoll);
    if (ops == NULL || atomic_load(&gr_netwaiters) == 0) {
        return;
    }
    atomic_store(&sched.lastpoll, nanotime());
    ops->poll(delay_ns, glist_inject, l);
}

/* Go's injectglist: with p (this M's, in the scheduler) the first G is
 * returned to run here and the rest queue on p; without, all go to the
 * global queue.  Either way an M is woken for the others. */
static gr_g *
injectglist(glist *l, gr_p *p)
{
    gr_g *first = NULL;
    gr_g *g = l->head;
    if (p != NULL && g != NULL) {
        first = g;
        g = g->schedlink;
    }
    while (g != NULL) {
        gr_g *next = g->schedlink;
        if (p != NULL) {
            runqput(p, g, false);
        }
        else {
            globrunqput(g);
        }
        g = next;
    }
    if (l->n > (p != NULL ? 1 : 0)) {
        wakep();
    }
    return first;
}

/* Find a G to run; returns with m->p held.  No GIL. */
static gr_g *
findrunnable(gr_m *m)
{
    for (;;) {
        while (atomic_load(&sched.exiting)) {
            msleep(&m->park, -1);
        }
        gr_p *p = m->p;
        if (p == NULL) {
            pthread_mutex_lock(&sched.lock);
            p = pidleget_locked();
            pthread_mutex_unlock(&sched.lock);
            if (p == NULL) {
                stopm(m);
                continue;
            }
            acquirep(m, p);
        }
        if (p->id >= atomic_load(&sched.gomaxprocs)) {
            /* gomaxprocs shrank: kill this P, its Gs go to the global
             * queue.  Checked again under the lock: a grow may have come
             * in between, and then the P stays in use. */
            pthread_mutex_lock(&sched.lock);
            bool dead = p->id >= atomic_load(&sched.gomaxprocs);
            if (dead) {
                m->p = NULL;
                pdestroy_locked(p);
            }
            pthread_mutex_unlock(&sched.lock);
            if (dead) {
                continue;
            }
        }
        gr_g *g;
        if (atomic_load(&p->schedtick) % GR_GLOBAL_TICK == 0 &&
            atomic_load(&sched.runqsize) > 0) {
            pthread_mutex_lock(&sched.lock);
            g = globrunqget_locked(p, 1);
            pthread_mutex_unlock(&sched.lock);
            if (g != NULL) {
                return g;
            }
        }
        int64_t spin_until = 0;
        for (;;) {
            if ((g = runqget(p)) != NULL) {
                return g;
            }
            if (atomic_load(&sched.runqsize) > 0) {
                pthread_mutex_lock(&sched.lock);
                g = globrunqget_locked(p, 0);
                pthread_mutex_unlock(&sched.lock);
                if (g != NULL) {
                    return g;
                }
            }
            int busy = atomic_load(&sched.gomaxprocs) -
                       atomic_load(&sched.npidle);
            if (!m->spinning &&
                2 * atomic_load(&sched.nmspinning) < busy) {
                m->spinning = true;
                atomic_fetch_add(&sched.nmspinning, 1);
            }
            if (!atomic_load(&sched.netpolling)) {
                glist l = {NULL, NULL, 0};
                netpoll_into(0, &l);
                if (l.head != NULL) {
                    return injectglist(&l, p);
                }
            }
            if (m->spinning && (g = steal_work(m, p)) != NULL) {
                return g;
            }
            int64_t now = nanotime();
            if (spin_until == 0) {
                spin_until = now + GR_SPIN_NS;
            }
            if (now >= spin_until || atomic_load(&sched.exiting)) {
                break;
            }
            sched_yield();
        }
        /* Nothing: give the P back and sleep. */
        pthread_mutex_lock(&sched.lock);
        if (atomic_load(&sched.runqsize) > 0) {
            g = globrunqget_locked(p, 0);
            pthread_mutex_unlock(&sched.lock);
            return g;
        }
        m->p = NULL;
        pidleput_locked(p);
        pthread_mutex_unlock(&sched.lock);
        if (m->spinning) {
            m->spinning = false;
            atomic_fetch_sub(&sched.nmspinning, 1);
            /* Go's delicate dance: work may have arrived between our last
             * look and the P going idle, with nobody woken for it. */
            if (any_runq_nonempty()) {
                pthread_mutex_lock(&sched.lock);
                p = pidleget_locked();
                pthread_mutex_unlock(&sched.lock);
                if (p != NULL) {
                    acquirep(m, p);
                    m->spinning = true;
                    atomic_fetch_add(&sched.nmspinning, 1);
                    continue;
                }
            }
        }
        if (atomic_load(&gr_netwaiters) > 0 &&
            atomic_load(&sched.netpoll) != NULL &&
            !atomic_exchange(&sched.netpolling, true)) {
            /* Sleep in the netpoller rather than on m->park: readiness
             * then wakes this M directly, with no second thread to go
             * through.  New work for an idle P breaks the poll (startm's
             * wakeup), so nothing waits behind it. */
            glist l = {NULL, NULL, 0};
            netpoll_into(-1, &l);
            pthread_mutex_lock(&sched.lock);
            atomic_store(&sched.netpolling, false);
            p = pidleget_locked();
            pthread_mutex_unlock(&sched.lock);
            if (p != NULL) {
                acquirep(m, p);
                if (l.head != NULL) {
                    return injectglist(&l, p);
                }
            }
            else if (l.head != NULL) {
                injectglist(&l, NULL);
            }
            continue;
        }
        stopm(m);
    }
}

/* Give up p, which this M no longer needs: to an M if it has work, else
 * to the idle list (Go's handoffp).  No GIL. */
static void
handoffp(gr_p *p)
{
    if (!runqempty(p) || atomic_load(&sched.runqsize) > 0) {
        startm(p, false, false);
        return;
    }
    pthread_mutex_lock(&sched.lock);
    pidleput_locked(p);
    pthread_mutex_unlock(&sched.lock);
}

/* g is locked to another M: hand it our P and go idle (Go's
 * startlockedm).  That M runs g next. */
static void
startlockedm(gr_m *m, gr_g *g)
{
    gr_m *lm = g->lockedm;
    gr_p *p = m->p;
    m->p = NULL;
    atomic_store(&p->m, NULL);
    atomic_store(&p->status, P_IDLE);
    lm->nextp = p;
    gr_sema_post(&lm->park);
    stopm(m);
}

/* This M's locked G is parked: wait until someone hands us a P to run it
 * with (Go's stoplockedm).  No GIL, no P. */
static void
stoplockedm(gr_m *m)
{
    for (;;) {
        msleep(&m->park, -1);
        if (!atomic_load(&sched.exiting) && m->nextp != NULL) {
            break;
        }
    }
    gr_p *p = m->nextp;
    m->nextp = NULL;
    acquirep(m, p);
}

/* ---- running a G ---------------------------------------------------- */

static void gfput(gr_p *p, gr_g *g);

/* Switch from g0 to g; returns when g comes back.  No GIL on entry or
 * exit. */
static void
execute(gr_m *m, gr_g *g)
{
    if (gr_pystate_finalizing()) {
        abandonm();     /* g is abandoned with the rest, as at Go's exit */
    }
    gr_p *p = m->p;
    g->m = m;
    m->curg = g;
    atomic_store(&g->status, G_RUNNING);
    atomic_store(&p->curg, g);
    atomic_store(&p->status, P_RUNG);
    atomic_fetch_add(&p->schedtick, 1);
    atomic_fetch_add(&sched.nswitches, 1);

    gil_wanted(p);
    gr_pystate_enter(g->tstate, m->tstate);
    /* If p waited for the GIL, this M has it now: whoever stepped aside
     * for it may want it back. */
    handoff_over(p);
    m->gilhand = atomic_load(&sched.hand);
    gr_pystate_refit(g->tstate, g->stack.size, &g->fit_limit);
    gr_switch_annotate_begin(&m->g0fake, g->stack.lo, g->stack.size,
                             g->stack.tsan_fiber);
    gr_ctx_switch(&m->g0ctx, &g->ctx);
    gr_switch_annotate_end(m->g0fake);
    /* Back on g0 with the GIL and g's thread state: g parked, yielded or
     * finished. */
    gr_stack_check(&g->stack, g->goid, g->tstate);
    m->curg = NULL;
    /* m->p may differ from p: sysmon may have retaken p, and the G may
     * then have taken an idle P (reacquire_p). */
    p = m->p;
    if (p != NULL) {
        int expect = P_RUNG;
        /* p->m first: once retaken (and perhaps killed and relisted by
         * gomaxprocs), p may be P_RUNG again under another M. */
        if (atomic_load(&p->m) == m &&
            atomic_compare_exchange_strong(&p->status, &expect, P_SCHED)) {
            atomic_store(&p->curg, NULL);
        }
        else {
            m->p = NULL;    /* sysmon retook it while g ran */
            atomic_fetch_sub(&sched.nmpless, 1);
        }
    }
    /* Counted while the GIL is still held: a thread that forks holds the
     * GIL, so once it sees 0 no M can be inside an unlock function. */
    atomic_fetch_add(&sched.nunlocking, 1);
    gr_pystate_leave(g->tstate, m->tstate);

    switch (g->exitkind) {
    case EXIT_PARK:
        if (g->unlockf != NULL) {
            void (*f)(void *) = g->unlockf;
            g->unlockf = NULL;
            f(g->unlockarg);
        }
        break;
    case EXIT_YIELD:
        atomic_store(&g->status, G_RUNNABLE);
        if (g->lockedm != m) {
            globrunqput(g);
        }
        else {
            m->lockedresume = true;
        }
        break;
    case EXIT_DEAD:
        gr_ctx_done(&g->stack);
        gfput(m->p, g);
        break;
    }
    atomic_fetch_sub(&sched.nunlocking, 1);
}

static void *
mstart(void *arg)
{
    gr_m *m = arg;
    tls_m = m;
    m->g0fiber = gr_switch_fiber_self();
    /* An alternate signal stack, so that a goroutine's stack overflow is
     * reported (gstack.c) rather than a bare SIGSEGV. */
    gr_stack_thread_init(m, fault_curg);
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *lo;
        size_t size;
        pthread_attr_getstack(&attr, &lo, &size);
        m->g0lo = lo;
        m->g0size = size;
        pthread_attr_destroy(&attr);
    }
    /* Our own thread state; PyThreadState_New needs no GIL, but must not
     * race finalization's deletion of thread states. */
    if (gr_pystate_finalizing()) {
        abandonm();
    }
    m->tstate = gr_pystate_new_m(sched.interp);
    if (m->tstate == NULL) {
        Py_FatalError("goroutine: cannot make a thread state for an M");
    }
    m->ident = PyThread_get_thread_ident();
    pthread_mutex_lock(&sched.lock);
    m->alllink = sched.allm;
    sched.allm = m;
    pthread_mutex_unlock(&sched.lock);
    take_nextp(m);
    for (;;) {
        gr_g *g;
        if (m->lockedg != NULL) {
            g = m->lockedg;
            if (!m->lockedresume) {
                /* Its G parked (or sits on someone's queue once readied):
                 * give the P away and wait for whoever dequeues the G to
                 * hand us a P to run it with. */
                if (m->p != NULL) {
                    gr_p *own = m->p;
                    m->p = NULL;
                    handoffp(own);
                }
                stoplockedm(m);
            }
            else if (m->p == NULL) {
                /* It yielded while sysmon retook our P: it is on no
                 * queue.  Take an idle P, or queue it so that whoever
                 * dequeues it hands us one. */
                pthread_mutex_lock(&sched.lock);
                gr_p *p2 = pidleget_locked();
                pthread_mutex_unlock(&sched.lock);
                if (p2 != NULL) {
                    acquirep(m, p2);
                }
                else {
                    globrunqput(g);
                    wakep();
                    stoplockedm(m);
                }
            }
            m->lockedresume = false;
        }
        else {
            g = findrunnable(m);
            if (m->spinning) {
                resetspinning(m);
            }
            if (g->lockedm != NULL && g->lockedm != m) {
                startlockedm(m, g);
                continue;
            }
        }
        execute(m, g);
    }
    return NULL;
}

/* ---- goroutines ----------------------------------------------------- */

/* Switch the current G to g0.  GIL held; returns (for a park or yield)
 * when the G runs again, GIL held, possibly on another M. */
static void
gswitch_to_g0(gr_g *g, int kind)
{
    gr_m *m = getm();
    g->exitkind = kind;
    void *fake = NULL;
    gr_switch_annotate_begin(kind == EXIT_DEAD ? NULL : &fake,
                             m->g0lo, m->g0size, m->g0fiber);
    gr_ctx_switch(&g->ctx, &m->g0ctx);
    gr_switch_annotate_end(fake);
}

/* ---- thread-owned locks held across a park --------------------------
 *
 * threading.RLock is owned by an OS thread (PyThread_get_thread_ident),
 * and a goroutine's OS thread is its M.  A goroutine that parks holding
 * one would let another goroutine on the same M re-enter it, and would
 * fail to release it after resuming on another M.  The case the standard
 * library makes common is logging: Handler.handle() holds the handler's
 * RLock around emit(), and an emit() that sends on a channel parks.  So a
 * goroutine that parks (or yields) while its thread owns logging's module
 * lock or the lock of any logging handler parks *wired* to its M, exactly
 * as under runtime.lock_os_thread(): its P goes to other goroutines, its M
 * sleeps running nothing else, and it resumes on that M, where the
 * release works.  The wiring ends when it resumes.
 *
 * How it knows: logging keeps a weak reference to every handler ever made
 * (logging._handlerList, read by logging.shutdown); for each live one
 * whose lock is a _thread.RLock, the lock's owner and count fields
 * (read by src/pystate.c) say whether this thread owns it.  Only C calls
 * that allocate nothing and run no Python code (a handler class with its own __getattr__/__getattribute__ is
 * skipped), because parks happen with a channel lock held.  Other
 * threading.RLocks cannot be seen; docs/getting-started.md says to use
 * sync.RLock or runtime.lock_os_thread() for those. */

static PyObject *rlock_type;        /* _thread.RLock, set on first use */
static PyObject *str_logging, *str_handlerlist, *str_modlock, *str_lock;

/* Names and the RLock type, made once at the first go() (GIL held). */
static void
thread_locks_init(void)
{
    if (str_lock != NULL) {
        return;
    }
    str_logging = PyUnicode_InternFromString("logging");
    str_handlerlist = PyUnicode_InternFromString("_handlerList");
    str_modlock = PyUnicode_InternFromString("_lock");
    str_lock = PyUnicode_InternFromString("lock");
    PyObject *thread = PyImport_ImportModule("_thread");
    if (thread != NULL) {
        rlock_type = PyObject_GetAttrString(thread, "RLock");
        Py_DECREF(thread);
    }
    size_t size = gr_pystate_rlock_size();
    if (rlock_type != NULL && (!PyType_Check(rlock_type) ||
        (size != 0 && (size_t)((PyTypeObject *)rlock_type)->tp_basicsize !=
                      size))) {
        Py_CLEAR(rlock_type);       /* an unknown layout: never guess */
    }
    PyErr_Clear();
}

/* Does this thread own lock, a _thread.RLock?  GIL held; allocates
 * nothing, runs no Python code. */
static bool
owns_rlock(PyObject *lock)
{
    return lock != NULL && (PyObject *)Py_TYPE(lock) == rlock_type &&
           gr_pystate_rlock_owned(lock);
}

/* An attribute of obj found by the generic lookup only, or NULL. */
static PyObject *
plain_attr(PyObject *obj, PyObject *name)
{
    if (Py_TYPE(obj)->tp_getattro != PyObject_GenericGetAttr) {
        return NULL;
    }
    return PyObject_GetAttr(obj, name);
}

/* Does the calling goroutine's thread own a lock that logging holds while
 * it calls out?  GIL held; any pending exception is kept. */
static bool
holds_logging_lock(void)
{
    if (rlock_type == NULL || str_lock == NULL) {
        return false;
    }
    /* A park almost never has an exception pending: save and restore it
     * only when there is one (about 90 instructions of every park on
     * 3.11, callgrind). */
    PyObject *et = NULL, *ev = NULL, *etb = NULL;
    bool saved = PyErr_Occurred() != NULL;
    if (saved) {
        PyErr_Fetch(&et, &ev, &etb);
    }
    bool held = false;
    /* sys.modules itself, not PyImport_GetModule: that one reads
     * logging.__spec__._initializing, attribute lookups that could run
     * Python code under the caller's channel lock and cost about 1,400
     * instructions of every park (callgrind, select_2).  Only goroutines
     * park, and they stop when finalization begins, before CPython drops
     * the modules dict (3.11 aborts on asking for it after that). */
    PyObject *logging = PyDict_GetItemWithError(PyImport_GetModuleDict(),
                                                str_logging);
    Py_XINCREF(logging);
    PyObject *dict = logging != NULL && PyModule_Check(logging)
                     ? PyModule_GetDict(logging) : NULL;
    if (dict != NULL) {
        /* Borrowed from the module's dict: no code runs to find them. */
        held = owns_rlock(PyDict_GetItemWithError(dict, str_modlock));
        PyObject *list = PyDict_GetItemWithError(dict, str_handlerlist);
        if (list != NULL && PyList_Check(list)) {
            Py_INCREF(list);
            for (Py_ssize_t i = 0; !held && i < PyList_GET_SIZE(list); i++) {
                PyObject *h = gr_pystate_weakref_get(PyList_GET_ITEM(list, i));
                if (h != NULL) {
                    PyObject *lock = plain_attr(h, str_lock);
                    held = owns_rlock(lock);
                    Py_XDECREF(lock);
                    Py_DECREF(h);
                }
            }
            Py_DECREF(list);
        }
    }
    Py_XDECREF(logging);
    if (saved) {
        PyErr_Clear();
        PyErr_Restore(et, ev, etb);
    }
    else if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    return held;
}

/* Before g leaves its M (park, yield): wire it to the M if it holds a
 * thread-owned lock and is not wired already.  Returns whether it did. */
static bool
wire_if_holding(gr_g *g)
{
    if (g->lockedm != NULL || !holds_logging_lock()) {
        return false;
    }
    g->lockedm = g->m;
    g->m->lockedg = g;
    return true;
}

/* After g resumed (on the M it was wired to): undo wire_if_holding. */
static void
unwire(gr_g *g, bool wired)
{
    if (wired && g->lockcount == 0 && g->lockedm != NULL) {
        g->lockedm->lockedg = NULL;
        g->lockedm = NULL;
    }
}

void
gr_park(void (*unlockf)(void *), void *arg, const char *reason)
{
    gr_g *g = gr_getg();
    bool wired = wire_if_holding(g);
    g->unlockf = unlockf;
    g->unlockarg = arg;
    g->waitreason = reason;
    atomic_store(&g->status, G_WAITING);
    atomic_fetch_sub(&sched.nactive, 1);
    gswitch_to_g0(g, EXIT_PARK);
    g->waitreason = NULL;
    unwire(g, wired);
}

static void wake_for_global(void);

void
gr_ready(gr_g *g)
{
    if (gr_g_ghost(g)) {
        return;     /* the parent's, after a fork: gone with its M */
    }
    atomic_store(&g->status, G_RUNNABLE);
    atomic_fetch_add(&sched.nactive, 1);
    atomic_fetch_add(&sched.epoch, 1);
    gr_p *p = reacquire_p();
    if (p != NULL) {
        /* Locality: the readied G runs next on this M.  No other M is
         * woken for it: see "Waking other Ms" in the header. */
        runqput(p, g, true);
        return;
    }
    globrunqput(g);
    wake_for_global();
}

/* ---- preemption -----------------------------------------------------
 *
 * Go preempts a goroutine that has run 10 ms so that a waiting one can
 * run.  Here a G readied from outside the runtime's Ms (a plain thread, the
 * timer thread) while every P runs a G, or a P's queued G after its G ran
 * a whole slice, gets the P (an idle one, else one retaken from a G running
 * Python) and an M of its own: "preemption by GIL hand-off".  The G it
 * displaces goes on, on its own M and OS thread, without a P, exactly as
 * after sysmon's hand-off; it takes an idle P back at its next runtime
 * call or safe point (reacquire_p).  Nothing runs in between on the
 * displaced G's thread, so every lock owned by a thread ident
 * (threading.RLock, import locks, logging's) keeps its meaning: this is as
 * safe as threads, which is why it is on by default (GODEBUG=
 * asyncpreemptoff=1 turns it off, as in Go).  An earlier design switched
 * to the waiting G on the displaced G's own M and let it enter an RLock
 * the displaced one held (299 of 300 rounds; docs/design.md).
 *
 * The new M must then get the GIL at once, not after CPython's switch
 * interval (5 ms) and not after the other Python threads had their turn.
 * So the hand-off also queues a pending call (gr_pystate_preempt_post,
 * 3.12+): whichever thread holds the GIL runs preempt_cb at its next
 * safe point (CPython's eval breaker: loop back-edges and calls), and
 * steps aside: it lets the GIL go and waits until the handed M's first G
 * has taken it (sched.hand cleared), bounded by GR_RETAKE_NS.  It posts
 * the request again first, so a thread that takes the GIL before the
 * handed M (another busy goroutine, the main thread) steps aside in turn,
 * and the handed M ends up the only one asking for the GIL.  CPython's own
 * drop request (FORCE_SWITCHING) only waits until *some* thread took the
 * GIL, and the other busy goroutine, which waits in take_gil already,
 * usually is that thread (docs/design.md, "Preemption", has the numbers).
 *
 * An M that found its G by itself (spinning, or handed a P by sysmon's
 * slice-end retake) registers the same way when it enters execute
 * (gil_wanted), and sysmon asks for it if it still waits on its next tick:
 * goroutines that hand the GIL to each other by parking within a tick
 * never pay for a request.  One M waits this way at a time (sched.hand);
 * others take the GIL as CPython gives it.  3.10/3.11 have no pending call that a non-main thread runs
 * (docs/design.md): there is no preemption there, and sysmon hands the P
 * over after a slice as it always did. */

/* sched.hand's value for the gen-th hand-off, of p (ids are < 1024). */
#define HAND_PBITS 11
#define HAND_TOKEN(gen, p) (((gen) << HAND_PBITS) | (unsigned)((p)->id + 1))
#define HAND_IS(tok, p) \
    ((tok) != 0 && ((tok) & ((1u << HAND_PBITS) - 1)) == \
     (unsigned)((p)->id + 1))

/* The hand-off tok, if it is still the one, is over: wake whoever stepped
 * aside for it.  Any thread; sched.lock may be held (handmu is a leaf). */
static void
handoff_end(unsigned long long tok)
{
    if (tok == 0 || atomic_load(&sched.hand) != tok ||
        !atomic_compare_exchange_strong(&sched.hand, &tok, 0)) {
        return;
    }
    pthread_mutex_lock(&sched.handmu);
    pthread_cond_broadcast(&sched.handcond);
    pthread_mutex_unlock(&sched.handmu);
}

/* The hand-off of p for the GIL, if there is one, is over: its M's G has
 * the GIL, or p went idle or died without running one.  Any thread;
 * sched.lock may be held. */
static void
handoff_over(gr_p *p)
{
    unsigned long long tok = atomic_load(&sched.hand);
    if (HAND_IS(tok, p)) {
        handoff_end(tok);
    }
}

/* Make p the P whoever holds the GIL steps aside for, if no other is.
 * Returns whether p is it.  Any thread, no runtime lock held. */
static bool
hand_claim(gr_p *p)
{
    unsigned long long none = 0;
    if (atomic_load(&sched.hand) != 0) {
        return false;
    }
    unsigned long long gen = atomic_fetch_add(&sched.handgen, 1) + 1;
    if (!atomic_compare_exchange_strong(&sched.hand, &none,
                                        HAND_TOKEN(gen, p))) {
        return false;
    }
    if (atomic_load(&sched.sysmoncalm)) {
        /* Set before sysmon reads sched.hand for the last time before
         * its long sleep (both seq_cst): it either sees the hand or is
         * woken here. */
        pthread_mutex_lock(&sched.sysmonmu);
        pthread_cond_signal(&sched.sysmoncond);
        pthread_mutex_unlock(&sched.sysmonmu);
    }
    return true;
}

/* p's M is about to take the GIL for a G (execute): if no other P waits,
 * p is the one whoever holds the GIL steps aside for, once sysmon sees it
 * still waiting on its next tick (a wait of 0.1-0.2 ms; a hand-off asks at
 * once).  No GIL. */
static void
gil_wanted(gr_p *p)
{
    if (!atomic_load(&sched.preemptoff)) {
        hand_claim(p);
    }
}

/* handmu/handcond and sysmonmu/sysmoncond (made afresh in a forked
 * child, where a thread that held one does not exist). */
static void
handcond_init(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&sched.handmu, NULL);
    pthread_cond_init(&sched.handcond, &attr);
    pthread_mutex_init(&sched.sysmonmu, NULL);
    pthread_cond_init(&sched.sysmoncond, &attr);
    pthread_condattr_destroy(&attr);
    atomic_store(&sched.sysmoncalm, false);
}

static int preempt_cb(void *arg);

/* Queue a preemption request unless one is queued.  Any thread, GIL or
 * not, no runtime lock held. */
static void
preempt_post(void)
{
    if (atomic_load(&sched.preemptoff) || atomic_load(&sched.preemptposted) ||
        atomic_exchange(&sched.preemptposted, true)) {
        return;
    }
    if (gr_pystate_finalizing() ||
        !gr_pystate_preempt_post(sched.interp, preempt_cb)) {
        atomic_store(&sched.preemptposted, false);
    }
}

/* Hand p, which the caller took (from the idle list, or retaken from a
 * running G: retaken says so), to an M for the G that waits for it, and
 * ask the GIL's holder to step aside for that M.  No GIL needed, no
 * runtime lock held. */
static void
handoff_for_gil(gr_p *p, bool retaken)
{
    bool mine = hand_claim(p);
    atomic_fetch_add(&sched.npreempts, 1);
    startm(p, false, retaken);
    if (mine) {
        preempt_post();
    }
}

/* As many Ms as Ps run a displaced G without a P already: no P is retaken
 * for a hand-off (sysmon's, or wake_for_global's).  Each such retake
 * displaces another G, whose M goes on running it, and starts another M
 * for the P; a netpoller that readies Gs into the global queue all the
 * time, or more Gs running Python than Ps, would grow the threads without
 * bound (2,000 connections on 3.12: 48 OS threads).  A retake for a
 * blocking call, or of a P beyond gomaxprocs, is not a hand-off and still
 * comes.  Any thread. */
static bool
crowded(void)
{
    return atomic_load(&sched.nmpless) >= atomic_load(&sched.gomaxprocs);
}

/* Retake p from its running G for a hand-off (sysmon's retake): its G goes
 * on without a P.  Returns false if p was not running a G any more. */
static bool
retake(gr_p *p)
{
    int expect = P_RUNG;
    if (!atomic_compare_exchange_strong(&p->status, &expect, P_IDLE)) {
        return false;
    }
    atomic_store(&p->m, NULL);
    atomic_fetch_add(&sched.nmpless, 1);
    atomic_fetch_add(&sched.nhandoffs, 1);
    return true;
}

/* The pending call, on whatever thread held the GIL at its safe point.  A
 * goroutine that lost its P takes an idle one back; then, while a hand-off
 * waits for the GIL, this thread steps aside for it.  GIL held; returns 0
 * (never raises). */
static int
preempt_cb(void *arg)
{
    (void)arg;
    atomic_store(&sched.preemptposted, false);
    if (atomic_load(&sched.exiting) || gr_pystate_finalizing()) {
        return 0;
    }
    gr_m *m = getm();
    if (m != NULL && m->curg != NULL) {
        reacquire_p();
    }
    unsigned long long tok = atomic_load(&sched.hand);
    if (tok == 0) {
        return 0;
    }
    bool own = m != NULL && m->curg != NULL && m->gilhand == tok;
    if (own) {
        /* This G took the GIL in execute after the hand-off was made: it
         * waited for the GIL just as the handed M's G does, and is often
         * that very G, taken from the global queue by another M (one still
         * spinning, or handed a P by sysmon) before the handed M woke.
         * Stepping aside would send it to the back of the GIL's waiters
         * while the handed M finds nothing to run: one switch interval or
         * more (issue 24's p99). */
        atomic_fetch_add(&sched.nhand_own, 1);
        return 0;
    }
    atomic_fetch_add(&sched.nstepaside, 1);
    if (own) {
        /* Unreachable while the check above stands: counted so that
         * test_preempt sees it if that check ever goes. */
        atomic_fetch_add(&sched.nstepaside_own, 1);
    }
    /* The next holder may not be the handed M: it steps aside too. */
    preempt_post();
    /* CPython marks its pending-call handler busy while this runs; the
     * mark must not stay while the GIL is away (pystate.c). */
    PyThreadState *ts = PyThreadState_Get();
    gr_pystate_preempt_out(ts);
    PyEval_SaveThread();
    long long waitns = atomic_load(&sched.stepaside_ns);
    struct timespec dl = gr_deadline_after(waitns > 0 ? waitns
                                                      : GR_RETAKE_NS);
    pthread_mutex_lock(&sched.handmu);
    int err = 0;
    while (atomic_load(&sched.hand) == tok && err != ETIMEDOUT &&
           !atomic_load(&sched.exiting)) {
        err = pthread_cond_timedwait(&sched.handcond, &sched.handmu, &dl);
    }
    pthread_mutex_unlock(&sched.handmu);
    if (err == ETIMEDOUT) {
        atomic_fetch_add(&sched.nstepaside_timeout, 1);
        if (atomic_load(&sched.hand) == tok) {
            atomic_fetch_add(&sched.nstepaside_stood, 1);
        }
    }
    /* A wait that times out (the handed M has not had a CPU for a switch
     * interval: a loaded machine) takes the GIL back, but the hand-off
     * stands: it ends only when the handed M has the GIL or its P went
     * idle.  Ending it here left that M, often just about to take the GIL,
     * to wait in take_gil among the others for CPython's switch interval,
     * and often for several (seen: 7 s with the interval at 1 s).  Whoever
     * holds the GIL next steps aside again (the request was posted again
     * above, and sysmon posts it while the hand-off stands). */
    PyEval_RestoreThread(ts);
    gr_pystate_preempt_in(ts);
    return 0;
}

/* Give a G waiting in the global queue, put there from outside the
 * runtime's Ms or by an M without a P, an M: an idle P and a woken M as
 * Go does, and while goroutines run Python (sched.pybusy, sysmon's view),
 * a hand-off for the GIL, retaking a P from a running G when none is idle
 * (see "preemption").  Any thread, GIL or not, no runtime lock held. */
static void
wake_for_global(void)
{
    gr_m *m = getm();
    /* Python may be running: on a P (sysmon's view; with every P idle it
     * is stale), or on an M whose P was retaken, which sysmon cannot see. */
    bool pybusy = (atomic_load(&sched.pybusy) &&
                   atomic_load(&sched.npidle) <
                   atomic_load(&sched.gomaxprocs)) ||
                  atomic_load(&sched.nmpless) > 0;
    if (atomic_load(&sched.preemptoff) || !pybusy ||
        atomic_load(&sched.hand) != 0 || (m != NULL && m->curg == NULL)) {
        /* One hand-off at a time: sysmon makes the next.  An M on g0 is
         * about to look at the global queue itself. */
        wakep();
        return;
    }
    gr_p *p = NULL;
    bool retaken = false;
    if (atomic_load(&sched.npidle) > 0) {
        pthread_mutex_lock(&sched.lock);
        p = pidleget_locked();
        pthread_mutex_unlock(&sched.lock);
    }
    /* An idle P is handed over even when crowded: it displaces nobody,
     * and the M it needs is one wakep would start too (with every P idle
     * while the displaced Gs had not yet taken one back, the woken G used
     * to wait for sysmon's ticks to get the GIL: issue 24's p99).
     * Acquire on nallp, as in steal_work: every allp[i] below it is set. */
    int n = atomic_load(&sched.pybusy) && !crowded()
            ? atomic_load_explicit(&sched.nallp, memory_order_acquire) : 0;
    unsigned start = gr_fastrand();
    for (int i = 0; p == NULL && i < n; i++) {
        gr_p *q = sched.allp[(start + (unsigned)i) % (unsigned)n];
        if (q->id < atomic_load(&sched.gomaxprocs) &&
            atomic_load(&q->status) == P_RUNG && retake(q)) {
            p = q;
            retaken = true;
        }
    }
    if (p != NULL) {
        handoff_for_gil(p, retaken);
    }
    else {
        wakep();
    }
}

static void report_exception(gr_g *g);

/* The goroutine that called os.fork() has ended in the child: it was the
 * child's main goroutine (the child has no other thread), so the child
 * exits, as a Go program does when main returns.  Status: 0, SystemExit's
 * code, or 1 after an uncaught exception was reported.  Python buffers are
 * flushed; no interpreter finalization (as after os._exit).  GIL held. */
_Noreturn static void
forkmain_exit(gr_g *g, PyObject *res)
{
    int status = 0;
    if (res == NULL) {
        if (PyErr_ExceptionMatches(PyExc_SystemExit)) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            PyObject *code = value ? PyObject_GetAttrString(value, "code")
                                   : NULL;
            if (code == NULL) {
                PyErr_Clear();
            }
            else if (PyLong_Check(code)) {
                status = (int)PyLong_AsLong(code);
            }
            else if (code != Py_None) {
                PyObject_Print(code, stderr, Py_PRINT_RAW);
                fputc('\n', stderr);
                status = 1;
            }
            Py_XDECREF(code);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
        }
        else if (PyErr_ExceptionMatches(gr_globals.Goexit)) {
            PyErr_Clear();      /* runtime.goexit(): as a return */
        }
        else {
            report_exception(g);
            status = 1;
        }
    }
    Py_XDECREF(res);
    const char *names[] = {"stdout", "stderr"};
    for (int i = 0; i < 2; i++) {
        PyObject *f = PySys_GetObject(names[i]);
        PyObject *r = f ? PyObject_CallMethod(f, "flush", NULL) : NULL;
        Py_XDECREF(r);
        PyErr_Clear();
    }
    fflush(stdout);
    fflush(stderr);
    _exit(status);
}

/* The first frame of every goroutine.  GIL held, g's thread state
 * current. */
static void
gentry(void *arg)
{
    gr_g *g = arg;
    gr_switch_annotate_end(NULL);
    if (PyContext_Enter(g->context) == 0) {
        gr_pystate_start_hooks();
        PyObject *res = PyObject_Call(g->fn, g->args, g->kwargs);
        if (g == sched.forkg) {
            forkmain_exit(g, res);
        }
        if (res == NULL) {
            report_exception(g);
        }
        Py_XDECREF(res);
        if (PyContext_Exit(g->context) < 0) {
            PyErr_WriteUnraisable(g->fn);
        }
    }
    else {
        PyErr_WriteUnraisable(g->fn);
    }
    Py_CLEAR(g->fn);
    Py_CLEAR(g->args);
    Py_CLEAR(g->kwargs);
    Py_CLEAR(g->context);
    gr_pystate_recycle(g->tstate);
    gr_pystate_unlist(g->tstate);
    if (g->lockedm != NULL) {
        /* Go ends a thread whose locked goroutine exits; we just unpin. */
        g->lockedm->lockedg = NULL;
        g->lockedm = NULL;
        g->lockcount = 0;
    }
    atomic_store(&g->status, G_DEAD);
    atomic_fetch_sub(&sched.nactive, 1);
    atomic_fetch_sub(&sched.ngoroutines, 1);
    gswitch_to_g0(g, EXIT_DEAD);
    Py_FatalError("goroutine: a dead goroutine was resumed");
}

/* An exception escaped a goroutine: runtime.goexit ends it quietly,
 * anything else goes to goroutine._report (excepthook, panic exit), which
 * the package registered with _core._register. */
static void
report_exception(gr_g *g)
{
    /* sys.exit() in a goroutine ends the goroutine, as it ends a thread:
     * quietly, after its finally blocks and defers ran on the way out. */
    if (PyErr_ExceptionMatches(gr_globals.Goexit) ||
        PyErr_ExceptionMatches(PyExc_SystemExit)) {
        PyErr_Clear();
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    PyObject *report = gr_globals.report;
    if (report == NULL) {
        /* goroutine/__init__.py has not registered yet (it failed, or
         * only _core was loaded): say what escaped, as threading would. */
        PyErr_Restore(type, value, tb);
        PyErr_WriteUnraisable(g->fn);
        return;
    }
    Py_INCREF(report);      /* a later _register may replace it */
    PyObject *res = PyObject_CallFunction(report, "OOOK",
                                          type, value ? value : Py_None,
                                          tb ? tb : Py_None,
                                          (unsigned long long)g->goid);
    Py_DECREF(report);
    if (res == NULL) {
        PyErr_WriteUnraisable(g->fn);
    }
    Py_XDECREF(res);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

/* Dead Gs keep their stack and thread state for the next go() (Go's
 * gfput/gfget): a per-P list first, owner only like the run queue, then
 * the global one in batches.  sched.lock must not be held.
 *
 * Bounded, so that a burst gives its memory back.  Go frees the stacks of
 * all dead Gs at every GC; we have no GC cycle, so an M that has been idle
 * for GR_SCAVENGE_NS (stopm) strips the dead Gs beyond GR_GFREE_GLOBAL
 * (gfscavenge): the stack goes back to gstack.c's pool, which trims all
 * but a few hundred, the thread state is cleared and deleted, and the bare
 * G struct goes to sched.gfreebare, to be equipped again by newproc.
 * Stripping at every death instead cost a steady go() loop 3x
 * (docs/design.md).  G structs themselves are never freed, as in Go:
 * nothing must ever find a dangling G. */
static void
gfput(gr_p *p, gr_g *g)
{
    g->m = NULL;
    gr_g *first = g, *last = g;
    int n = 1;
    if (p != NULL) {
        g->schedlink = p->gfree;
        p->gfree = g;
        if (++p->ngfree < GR_GFREE_LOCAL) {
            return;
        }
        /* Move half to the global list. */
        first = p->gfree;
        last = first;
        while (n < GR_GFREE_LOCAL / 2) {
            last = last->schedlink;
            n++;
        }
        p->gfree = last->schedlink;
        p->ngfree -= n;
    }
    pthread_mutex_lock(&sched.lock);
    last->schedlink = sched.gfree;
    sched.gfree = first;
    sched.ngfree += n;
    pthread_mutex_unlock(&sched.lock);
}

static bool
gfsurplus(void)
{
    pthread_mutex_lock(&sched.lock);
    bool r = sched.ngfree > GR_GFREE_GLOBAL;
    pthread_mutex_unlock(&sched.lock);
    return r;
}

/* Strip the dead Gs beyond GR_GFREE_GLOBAL.  On an idle M's g0, no GIL,
 * no P.  The Gs are dead and on no list but ours, so only sysmon can
 * still hold one of their pointers: a pass that read p->curg before the
 * G finished.  Its thread state is deleted only after such a pass is over
 * (sysmonseq is odd during a pass). */
static void
gfscavenge(gr_m *m)
{
    gr_g *list = NULL, *last = NULL;
    int n = 0;
    pthread_mutex_lock(&sched.lock);
    while (sched.ngfree > GR_GFREE_GLOBAL) {
        gr_g *x = sched.gfree;
        sched.gfree = x->schedlink;
        sched.ngfree--;
        x->schedlink = list;
        list = x;
        if (last == NULL) {
            last = x;
        }
        n++;
    }
    pthread_mutex_unlock(&sched.lock);
    if (list == NULL) {
        return;
    }
    unsigned long long seq = atomic_load(&sched.sysmonseq);
    while ((seq & 1) && atomic_load(&sched.sysmonseq) == seq &&
           !atomic_load(&sched.exiting)) {
        sched_yield();
    }
    bool gil = !atomic_load(&sched.exiting);
    if (gil) {
        PyEval_RestoreThread(m->tstate);
    }
    for (gr_g *g = list; g != NULL; g = g->schedlink) {
        if (gil && gr_pystate_delete(g->tstate)) {
            g->tstate = NULL;       /* (3.15: kept if an M names it) */
        }
        gr_stack_free(&g->stack);
        g->stack.lo = NULL;
    }
    if (gil) {
        PyEval_SaveThread();
    }
    pthread_mutex_lock(&sched.lock);
    last->schedlink = sched.gfreebare;
    sched.gfreebare = list;
    sched.ngfreebare += n;
    pthread_mutex_unlock(&sched.lock);
#ifdef __GLIBC__
    /* The thread states were malloc'd: without a trim glibc keeps the
     * freed heap.  Measured (3.13, a burst of 200,000): 142 MiB resident
     * afterwards without it, 74 MiB with it (and G structs in chunks of
     * their own, galloc). */
    malloc_trim(0);
#endif
}

/* A new, zeroed G struct.  G structs are never freed, so they are carved
 * from chunks of their own rather than malloc'd: interleaved with the
 * thread states on the heap they kept every page of it resident after a
 * burst (the freed thread states could not be given back).  GIL held. */
static gr_g *
galloc(void)
{
    static char *next;
    static size_t left;
    const size_t chunk = 1u << 20;
    size_t sz = (sizeof(gr_g) + 63) & ~(size_t)63;
    if (left < sz) {
        void *m = mmap(NULL, chunk, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            return NULL;
        }
        next = m;
        left = chunk;
    }
    gr_g *g = (gr_g *)next;
    next += sz;
    left -= sz;
    return g;
}

/* A dead G for newproc: an equipped one if any, else a bare one (stack.lo
 * NULL, tstate maybe NULL), else NULL. */
static gr_g *
gfget(gr_p *p)
{
    if (p != NULL && p->gfree != NULL) {
        gr_g *g = p->gfree;
        p->gfree = g->schedlink;
        p->ngfree--;
        return g;
    }
    pthread_mutex_lock(&sched.lock);
    gr_g *g = sched.gfree;
    if (g != NULL) {
        sched.gfree = g->schedlink;
        sched.ngfree--;
    }
    else if ((g = sched.gfreebare) != NULL) {
        sched.gfreebare = g->schedlink;
        sched.ngfreebare--;
    }
    pthread_mutex_unlock(&sched.lock);
    return g;
}

/* Put back a bare G that newproc could not equip. */
static void
gfputbare(gr_g *g)
{
    pthread_mutex_lock(&sched.lock);
    g->schedlink = sched.gfreebare;
    sched.gfreebare = g;
    sched.ngfreebare++;
    pthread_mutex_unlock(&sched.lock);
}

static void sysmon_start(void);

static int
sched_start(void)
{
    if (atomic_load(&sched.started)) {
        return 0;
    }
    sched.interp = PyInterpreterState_Get();
    thread_locks_init();
    int n = 0;
    const char *env = getenv("GOMAXPROCS");
    if (env != NULL) {
        n = atoi(env);
    }
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) == 0) {
            c = CPU_COUNT(&set);
        }
        n = c > 0 ? (int)c : 1;
    }
    if (n > 1024) {
        n = 1024;
    }
    /* Go's switch for asynchronous preemption, on by default as in Go
     * (GODEBUG=asyncpreemptoff=1 turns it off); 3.10/3.11 have no safe
     * point to ask for it at. */
    const char *dbg = getenv("GODEBUG");
    atomic_store(&sched.preemptoff, !gr_pystate_preempt_supported() ||
                 (dbg != NULL && strstr(dbg, "asyncpreemptoff=1") != NULL));
    handcond_init();
    sched.allp = calloc(1024, sizeof(gr_p *));
    if (sched.allp == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < n; i++) {
        sched.allp[i] = calloc(1, sizeof(gr_p));
        if (sched.allp[i] == NULL) {
            while (i-- > 0) {
                free(sched.allp[i]);
            }
            free(sched.allp);
            sched.allp = NULL;
            PyErr_NoMemory();
            return -1;
        }
    }
    pthread_mutex_lock(&sched.lock);
    atomic_store(&sched.gomaxprocs, n);
    for (int i = n - 1; i >= 0; i--) {
        gr_p *p = sched.allp[i];
        p->id = i;
        pidleput_locked(p);
    }
    atomic_store(&sched.nallp, n);
    pthread_mutex_unlock(&sched.lock);
    atomic_store(&sched.started, true);
    sysmon_start();
    return 0;
}

static int
reject_coroutine_function(PyObject *f)
{
    PyObject *fn = f;
    if (PyMethod_Check(fn)) {
        fn = PyMethod_GET_FUNCTION(fn);
    }
    if (PyFunction_Check(fn)) {
        PyCodeObject *code = (PyCodeObject *)PyFunction_GET_CODE(fn);
        if (code->co_flags & (CO_COROUTINE | CO_ASYNC_GENERATOR)) {
            PyErr_SetString(PyExc_TypeError,
                "go() takes a plain function, not a coroutine function: "
                "run a coroutine with go(asyncio.run, coro) or await the "
                "_async methods from asyncio code");
            return -1;
        }
    }
    return 0;
}

/* Make a goroutine running fn(*fargs, **kwargs).  GIL held.  Steals the
 * reference to fargs.  Returns 0, or -1 with an exception set. */
static int
newproc(PyObject *fn, PyObject *fargs, PyObject *kwargs)
{
    if (gr_sched_stopped()) {
        Py_DECREF(fargs);
        return -1;
    }
    if (sched_start() < 0) {
        Py_DECREF(fargs);
        return -1;
    }
    if (!atomic_load(&sched.sysmonup)) {
        sysmon_start();         /* a forked child's first go() */
    }
    PyObject *ctx = PyContext_CopyCurrent();
    if (ctx == NULL) {
        Py_DECREF(fargs);
        return -1;
    }
    /* Copied before a G is taken: a failure leaves nothing to undo. */
    PyObject *kwcopy = NULL;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0) {
        kwcopy = PyDict_Copy(kwargs);
        if (kwcopy == NULL) {
            Py_DECREF(fargs);
            Py_DECREF(ctx);
            return -1;
        }
    }
    gr_p *ownp = reacquire_p();
    gr_g *g = gfget(ownp);
    if (g == NULL) {
        g = galloc();
        if (g == NULL) {
            Py_DECREF(fargs);
            Py_DECREF(ctx);
            Py_XDECREF(kwcopy);
            PyErr_NoMemory();
            return -1;
        }
        atomic_store(&g->status, G_DEAD);
        pthread_mutex_lock(&sched.lock);
        g->allnext = sched.allg;
        sched.allg = g;
        pthread_mutex_unlock(&sched.lock);
    }
    if (g->stack.lo == NULL && gr_stack_alloc(&g->stack) < 0) {
        g->stack.lo = NULL;
        gfputbare(g);
        Py_DECREF(fargs);
        Py_DECREF(ctx);
        Py_XDECREF(kwcopy);
        PyErr_NoMemory();
        return -1;
    }
    if (g->tstate != NULL) {
        gr_pystate_list(g->tstate);     /* from the pool, unlisted */
    }
    else if ((g->tstate = gr_pystate_new()) == NULL) {
        gr_stack_free(&g->stack);
        g->stack.lo = NULL;
        gfputbare(g);
        Py_DECREF(fargs);
        Py_DECREF(ctx);
        Py_XDECREF(kwcopy);
        return -1;
    }
    g->goid = atomic_fetch_add(&sched.goidgen, 1) + 1;
    g->forkgen = atomic_load_explicit(&gr_forkgen, memory_order_relaxed);
    g->fn = Py_NewRef(fn);
    g->args = fargs;
    g->kwargs = kwcopy;
    g->context = ctx;
    gr_pystate_fit_stack(g->tstate, g->stack.lo, g->stack.size,
                         &g->fit_limit);
    gr_ctx_make(&g->ctx, &g->stack, gentry, g, g->goid);
    atomic_fetch_add(&sched.ncreated, 1);
    atomic_fetch_add(&sched.ngoroutines, 1);
    atomic_fetch_add(&sched.nactive, 1);
    atomic_fetch_add(&sched.epoch, 1);
    atomic_store(&g->status, G_RUNNABLE);

    /* As gr_ready: from a goroutine the new G goes to this P's runnext,
     * and another M is woken only when this P has a backlog, so work can
     * spread to other Ms when it piles up (and its GIL-releasing parts run
     * in parallel) while spawn-and-wait stays on one M. */
    if (ownp != NULL) {
        runqput(ownp, g, true);
    }
    else {
        globrunqput(g);
        wake_for_global();
    }
    return 0;
}

PyObject *
gr_go(PyObject *fn, PyObject *args)
{
    if (newproc(fn, Py_NewRef(args), NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

bool
gr_sched_exiting(void)
{
    return atomic_load(&sched.exiting);
}

/* Called with the GIL by an operation that would start a goroutine or
 * wait for one.  Once the interpreter finalizes (every atexit callback has
 * run; only the finalizing thread runs Python, e.g. __del__ methods of the
 * final collections) no goroutine can run again: raise at once instead of
 * blocking forever.  Returns true with RuntimeError set. */
bool
gr_sched_stopped(void)
{
    if (!gr_pystate_finalizing() && !atomic_load(&sched.exiting)) {
        return false;
    }
    PyErr_SetString(PyExc_RuntimeError,
        "goroutine: the runtime has stopped: the interpreter is "
        "finalizing and goroutines no longer run");
    return true;
}

/* go(f, *args, **kw) */
static PyObject *
sched_go(PyObject *module, PyObject *args, PyObject *kwargs)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n < 1) {
        PyErr_SetString(PyExc_TypeError, "go() missing the function to run");
        return NULL;
    }
    PyObject *fn = PyTuple_GET_ITEM(args, 0);
    if (!PyCallable_Check(fn)) {
        PyErr_Format(PyExc_TypeError, "go() argument must be callable, "
                     "not '%.200s'", Py_TYPE(fn)->tp_name);
        return NULL;
    }
    if (reject_coroutine_function(fn) < 0) {
        return NULL;
    }
    PyObject *fargs = PyTuple_GetSlice(args, 1, n);
    if (fargs == NULL || newproc(fn, fargs, kwargs) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- sysmon --------------------------------------------------------- */

/* Sleep up to us microseconds, or until a hand-off is claimed
 * (hand_claim signals while sysmoncalm is set). */
static void
sysmon_calm_sleep(int64_t us)
{
    struct timespec ts = gr_deadline_after(us * 1000);
    pthread_mutex_lock(&sched.sysmonmu);
    atomic_store(&sched.sysmoncalm, true);
    /* After sysmoncalm is set: a hand claimed before it would not wake us. */
    while (atomic_load(&sched.hand) == 0 && !atomic_load(&sched.exiting)) {
        if (pthread_cond_timedwait(&sched.sysmoncond, &sched.sysmonmu,
                                   &ts) != 0) {
            break;
        }
    }
    atomic_store(&sched.sysmoncalm, false);
    pthread_mutex_unlock(&sched.sysmonmu);
}

static void *
sysmon(void *arg)
{
    int64_t delay_us = 20;
    int idle = 0;
#ifdef __linux__
    /* Named for top -H, py-spy and the tick's test (test_goroutine.py). */
    pthread_setname_np(pthread_self(), "gr-sysmon");
#endif
    unsigned long long lasthand = 0;    /* sched.hand on the last tick */
    bool calm = false;                  /* the last tick found Ps running
                                           and nothing else to do */
    while (!atomic_load(&sched.exiting)) {
        if (calm && delay_us > GR_SYSMON_BUSY_US) {
            sysmon_calm_sleep(delay_us);
        }
        else {
            usleep((useconds_t)delay_us);
        }
        if (gr_pystate_finalizing()) {
            /* Every atexit callback has run: stop the runtime (Ms see
             * `exiting` at their next scheduling point) and never start
             * an M again. */
            atomic_store(&sched.exiting, true);
            break;
        }
        atomic_fetch_add(&sched.sysmonseq, 1);     /* odd: in a pass */
        int64_t now = nanotime();
        bool busy = false, pybusy = false;
        bool acted = false;     /* work queued, a retake, a hand-off */
        int n = atomic_load_explicit(&sched.nallp, memory_order_acquire);
        for (int i = 0; i < n; i++) {
            gr_p *p = sched.allp[i];
            if (atomic_load(&p->status) != P_RUNG) {
                continue;
            }
            busy = true;
            /* A P a shrink left running (its M was in the scheduler then)
             * dies as soon as it has queued Gs: they must not wait for
             * its G to park.  Retaken and handed to an M, which kills it
             * in findrunnable. */
            bool beyond = i >= atomic_load(&sched.gomaxprocs);
            unsigned t = atomic_load(&p->schedtick);
            gr_g *g = atomic_load(&p->curg);
            /* G structs are pooled, never freed: reading a stale one's
             * thread state is harmless. */
            bool detached = g != NULL && !gr_pystate_attached(g->tstate);
            if (p->sysmontick != t) {
                p->sysmontick = t;
                p->sysmonwhen = now;
                p->sysmondetached = detached;
                p->lastattached = detached ? 0 : now;
                pybusy = pybusy || !detached;
                continue;
            }
            /* Same G since the last tick.  In a GIL-releasing call (seen
             * detached twice running) it gives the P up at once, as Go
             * retakes a P in a syscall; running Python, after the switch
             * interval. */
            bool was = p->sysmondetached;
            p->sysmondetached = detached;
            if (!detached) {
                p->lastattached = now;
            }
            bool recent = p->lastattached != 0 &&
                          now - p->lastattached < GR_PYBUSY_NS;
            pybusy = pybusy || recent;
            /* Blocked in a GIL-releasing call.  With preemption on, not a
             * G that held the GIL recently: that one is most likely
             * waiting to take it back (it looks just the same). */
            bool blocked = detached && was &&
                           (atomic_load(&sched.preemptoff) || !recent);
            /* With preemption on, the retake is a hand-off for the GIL
             * (one at a time), and a G waiting in the global queue that
             * no idle P or spinning M takes gets the P of a G that has
             * run Python since the last tick, without waiting a slice. */
            bool handoff = !atomic_load(&sched.preemptoff) &&
                           atomic_load(&sched.hand) == 0;
            bool global = handoff && !blocked && !crowded() &&
                          atomic_load(&sched.runqsize) > 0 &&
                          atomic_load(&sched.npidle) == 0 &&
                          atomic_load(&sched.nmspinning) == 0;
            if (!beyond && !blocked && !global &&
                now - p->sysmonwhen < GR_RETAKE_NS) {
                continue;
            }
            if (runqempty(p) && atomic_load(&sched.runqsize) == 0) {
                continue;
            }
            acted = true;
            if (handoff && crowded() && !blocked && !beyond) {
                continue;       /* the displaced Gs' Ms share the GIL */
            }
            if (retake(p)) {
                p->sysmonwhen = now;
                if (handoff) {
                    handoff_for_gil(p, true);
                }
                else {
                    startm(p, false, true);
                }
            }
        }
        atomic_fetch_add(&sched.sysmonseq, 1);     /* even: between */
        if (!atomic_load(&sched.netpolling) &&
            now - atomic_load(&sched.lastpoll) > GR_NETPOLL_NS) {
            /* Nobody polled the network for 10 ms (every M busy). */
            glist l = {NULL, NULL, 0};
            netpoll_into(0, &l);
            if (l.head != NULL) {
                injectglist(&l, NULL);
            }
        }
        atomic_store(&sched.pybusy, pybusy);
        busy = busy || atomic_load(&sched.nmpless) > 0;
        if (!atomic_load(&sched.preemptoff)) {
            unsigned long long hand = atomic_load(&sched.hand);
            if (hand != 0 && hand == lasthand) {
                /* An M with a P has waited a tick for the GIL: whoever
                 * holds it steps aside at its next safe point. */
                preempt_post();
            }
            lasthand = hand;
            if (atomic_load(&sched.nmpless) > 0 &&
                atomic_load(&sched.npidle) > 0) {
                /* A G running on after its P was retaken takes an idle P
                 * back at its next safe point (preempt_cb's reacquire_p),
                 * rather than at its next runtime call. */
                preempt_post();
            }
            if (atomic_load(&sched.runqsize) > 0) {
                wakep();    /* work a hand-off in flight left waiting */
            }
        }
        acted = acted || atomic_load(&sched.hand) != 0 ||
                atomic_load(&sched.runqsize) > 0 ||
                atomic_load(&sched.nmpless) > 0;
        for (int i = 0; !acted && i < n; i++) {
            acted = !runqempty(sched.allp[i]);
        }
        /* Busy with work to hand out: every GR_SYSMON_BUSY_US.  Ps only
         * running (CPU-bound goroutines, nothing waiting): after 50 such
         * ticks the delay doubles up to GR_SYSMON_CALM_US, as Go's sysmon
         * backs off while it retakes nothing; a hand-off wakes it.  Its
         * 100 us tick cost two CPU-bound goroutines 1.19x threads' CPU;
         * docs/design.md, "sysmon's tick". */
        calm = busy && !acted;
        if (busy && acted) {
            idle = 0;
            delay_us = GR_SYSMON_BUSY_US;
        }
        else if (++idle > 50) {
            delay_us *= 2;
        }
        /* Busy: between the busy and the calm tick; idle: up to 10 ms. */
        int64_t most = busy ? GR_SYSMON_CALM_US : 10000;
        if (delay_us > most) {
            delay_us = most;
        }
        if (busy && delay_us < GR_SYSMON_BUSY_US) {
            delay_us = GR_SYSMON_BUSY_US;
        }
    }
    atomic_store(&sched.sysmonup, false);
    return NULL;
}

/* Detached, like the Ms: nothing joins it (it leaves by itself when the
 * interpreter finalizes; sched_shutdown waits for sysmonup to drop).
 * GIL held, so two starts cannot race. */
static void
sysmon_start(void)
{
    atomic_store(&sched.sysmonup, true);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&sched.sysmon, &attr, sysmon, NULL) != 0) {
        Py_FatalError("goroutine: cannot start sysmon");
    }
    pthread_attr_destroy(&attr);
}

/* ---- deadlock ------------------------------------------------------- */

static void
thread_block(int delta)
{
    atomic_fetch_add(&sched.nthreadblocked, delta);
    atomic_fetch_add(&sched.epoch, 1);
}

/* Registry of OS threads blocked in the runtime, for the deadlock check:
 * gr_globals.blocked, ident -> count, a Python dict guarded by the GIL
 * (made by gr_sched_init). */
int
gr_sched_note_blocked(int delta)
{
    PyObject *key = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    if (key == NULL) {
        return -1;
    }
    PyObject *cur = PyDict_GetItemWithError(gr_globals.blocked, key);
    long c = cur ? PyLong_AsLong(cur) : 0;
    c += delta;
    int r;
    if (c <= 0) {
        r = cur ? PyDict_DelItem(gr_globals.blocked, key) : 0;
    }
    else {
        PyObject *v = PyLong_FromLong(c);
        r = v ? PyDict_SetItem(gr_globals.blocked, key, v) : -1;
        Py_XDECREF(v);
    }
    Py_DECREF(key);
    thread_block(delta);
    return r;
}

uint64_t
gr_sched_epoch(void)
{
    return atomic_load(&sched.epoch);
}

/* Is ident the thread of one of our Ms?  Goroutines that call
 * threading.current_thread() leave a _DummyThread for their M in
 * threading's registry; those threads are the runtime, not "another
 * thread".  Takes sched.lock (no Python inside). */
static bool
is_m_ident(unsigned long ident)
{
    bool found = false;
    pthread_mutex_lock(&sched.lock);
    for (gr_m *m = sched.allm; m != NULL && !found; m = m->alllink) {
        found = m->ident == ident;
    }
    pthread_mutex_unlock(&sched.lock);
    return found;
}

/* Could some other Python thread still act: is any live thread that
 * threading knows about, other than the caller and our Ms, not blocked in
 * the runtime?  Daemon threads count (a server's request threads, a
 * library's I/O thread): whether one will ever touch a channel is not
 * knowable, and a false Deadlock kills a correct program.  GIL held;
 * errors count as "yes". */
static bool
other_thread_may_act(void)
{
    PyObject *threading = PyImport_ImportModule("threading");
    if (threading == NULL) {
        PyErr_Clear();
        return true;
    }
    PyObject *threads = PyObject_CallMethod(threading, "enumerate", NULL);
    Py_DECREF(threading);
    if (threads == NULL || !PyList_Check(threads)) {
        Py_XDECREF(threads);
        PyErr_Clear();
        return true;
    }
    bool may = false;
    unsigned long self = PyThread_get_thread_ident();
    Py_ssize_t n = PyList_GET_SIZE(threads);
    for (Py_ssize_t i = 0; i < n && !may; i++) {
        PyObject *t = PyList_GET_ITEM(threads, i);
        PyObject *ident = PyObject_GetAttrString(t, "ident");
        PyObject *alive = ident ? PyObject_CallMethod(t, "is_alive", NULL)
                                : NULL;
        if (ident == NULL || alive == NULL) {
            may = true;
        }
        else if (ident != Py_None && PyObject_IsTrue(alive) == 1) {
            unsigned long id = PyLong_AsUnsignedLong(ident);
            if (id == (unsigned long)-1 && PyErr_Occurred()) {
                may = true;
            }
            else if (id != self && !is_m_ident(id)) {
                may = PyDict_Contains(gr_globals.blocked, ident) != 1;
            }
        }
        Py_XDECREF(ident);
        Py_XDECREF(alive);
    }
    Py_DECREF(threads);
    PyErr_Clear();
    return may;
}

/* Is a Python signal handler installed that could run and send on a
 * channel (Go's "block until SIGTERM")?  Python's own SIGINT handler,
 * default_int_handler, only raises KeyboardInterrupt and does not count.
 * GIL held; errors count as "yes". */
static bool
signal_handler_installed(void)
{
    PyObject *signal = PyImport_ImportModule("signal");
    if (signal == NULL) {
        PyErr_Clear();
        return true;
    }
    bool found = false;
    PyObject *dflt = PyObject_GetAttrString(signal, "default_int_handler");
    PyObject *sigs = dflt ? PyObject_CallMethod(signal, "valid_signals", NULL)
                          : NULL;
    PyObject *it = sigs ? PyObject_GetIter(sigs) : NULL;
    if (it == NULL) {
        found = true;
    }
    PyObject *s;
    while (!found && it != NULL && (s = PyIter_Next(it)) != NULL) {
        PyObject *h = PyObject_CallMethod(signal, "getsignal", "O", s);
        Py_DECREF(s);
        if (h == NULL) {
            found = true;
        }
        else {
            found = h != dflt && PyCallable_Check(h);
            Py_DECREF(h);
        }
    }
    if (PyErr_Occurred()) {
        found = true;
    }
    Py_XDECREF(it);
    Py_XDECREF(sigs);
    Py_XDECREF(dflt);
    Py_DECREF(signal);
    PyErr_Clear();
    return found;
}

/*
 * Is the runtime quiescent in a way nothing can end?  GIL held, called by
 * a blocked thread.  True when no G is runnable or running, no timer is
 * pending, every other live Python thread (daemon or not, our Ms aside) is
 * itself blocked in the runtime, and no Python signal handler is
 * installed.  The caller asks twice, with the same epoch, before
 * believing.  This is the check of Go's checkdead made safe for a library
 * inside a host process: whatever could still act outside the runtime
 * keeps it quiet (Go, as a c-archive/c-shared library, does no check).
 */
bool
gr_sched_deadlocked(void)
{
    if (atomic_load(&sched.nactive) != 0) {
        return false;
    }
    if (atomic_load(&gr_timers_pending) != 0) {
        return false;
    }
    if (atomic_load(&gr_netwaiters) != 0) {
        return false;   /* the network may wake them */
    }
    if (other_thread_may_act() || signal_handler_installed()) {
        return false;
    }
    return atomic_load(&sched.nactive) == 0;
}

/* ---- the runtime module's functions --------------------------------- */

static PyObject *
sched_num_cpu(PyObject *module, PyObject *unused)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
        return PyLong_FromLong(CPU_COUNT(&set));
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return PyLong_FromLong(n > 0 ? n : 1);
}

static PyObject *
sched_gomaxprocs(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    long n = 0;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "gomaxprocs(n=0) takes one argument");
        return NULL;
    }
    if (nargs == 1) {
        n = PyLong_AsLong(args[0]);
        if (n == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (sched_start() < 0) {
        return NULL;
    }
    int prev = atomic_load(&sched.gomaxprocs);
    if (n <= 0) {
        return PyLong_FromLong(prev);
    }
    if (n > 1024) {
        n = 1024;
    }
    /* New Ps are allocated before the lock (and before anything changes),
     * so running out of memory leaves the runtime as it was. */
    int have = atomic_load(&sched.nallp);
    gr_p *fresh[1024];
    int nfresh = 0;
    for (int i = have; i < n; i++) {
        fresh[nfresh] = calloc(1, sizeof(gr_p));
        if (fresh[nfresh] == NULL) {
            while (nfresh-- > 0) {
                free(fresh[nfresh]);
            }
            return PyErr_NoMemory();
        }
        fresh[nfresh]->id = i;
        atomic_store(&fresh[nfresh]->status, P_DEAD);
        nfresh++;
    }
    /* Go's procresize.  The world is not stopped as Go stops it: an M in
     * the scheduler holds its P without the GIL, and waiting for it with
     * the GIL could deadlock against a GIL barrier.  Instead every P
     * beyond n dies at a point where it has exactly one owner (see the
     * header): here if it is idle or its G is off the GIL (we hold the
     * GIL, so no G is inside a runqput), else when its M next gives it
     * up.  Ps revived by a grow are exactly the dead ones. */
    pthread_mutex_lock(&sched.lock);
    prev = atomic_load(&sched.gomaxprocs);
    for (int i = 0; i < nfresh; i++) {
        sched.allp[have + i] = fresh[i];
        atomic_store_explicit(&sched.nallp, have + i + 1,
                              memory_order_release);
    }
    atomic_store(&sched.gomaxprocs, (int)n);
    if (n > prev) {
        for (int i = prev; i < n; i++) {
            gr_p *p = sched.allp[i];
            if (atomic_load(&p->status) == P_DEAD) {
                pidleput_locked(p);
            }
        }
    }
    else if (n < prev) {
        gr_p **pp = &sched.pidle;
        while (*pp != NULL) {
            gr_p *p = *pp;
            if (p->id >= n) {
                *pp = p->link;
                atomic_fetch_sub(&sched.npidle, 1);
                pdestroy_locked(p);
            }
            else {
                pp = &p->link;
            }
        }
        for (int i = (int)n; i < atomic_load(&sched.nallp); i++) {
            gr_p *p = sched.allp[i];
            int expect = P_RUNG;
            if (atomic_compare_exchange_strong(&p->status, &expect, P_IDLE)) {
                /* Retaken like sysmon does; its M learns it at its
                 * G's return (execute's CAS fails). */
                atomic_fetch_add(&sched.nmpless, 1);
                pdestroy_locked(p);
            }
        }
    }
    pthread_mutex_unlock(&sched.lock);
    wakep();
    return PyLong_FromLong(prev);
}

static PyObject *
sched_num_goroutine(PyObject *module, PyObject *unused)
{
    return PyLong_FromLongLong(atomic_load(&sched.ngoroutines));
}

static PyObject *
sched_goid(PyObject *module, PyObject *unused)
{
    gr_g *g = gr_getg();
    return PyLong_FromUnsignedLongLong(g ? g->goid : 0);
}

static PyObject *
sched_gosched(PyObject *module, PyObject *unused)
{
    gr_g *g = gr_getg();
    if (g == NULL) {
        /* A plain thread: let others have the GIL, as Go's Gosched lets
         * other goroutines run. */
        Py_BEGIN_ALLOW_THREADS
        sched_yield();
        Py_END_ALLOW_THREADS
        Py_RETURN_NONE;
    }
    bool wired = wire_if_holding(g);
    gswitch_to_g0(g, EXIT_YIELD);
    unwire(g, wired);
    Py_RETURN_NONE;
}

static PyObject *
sched_goexit(PyObject *module, PyObject *unused)
{
    if (gr_getg() == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "runtime.goexit() called outside a goroutine");
        return NULL;
    }
    PyErr_SetNone(gr_globals.Goexit);
    return NULL;
}

static PyObject *
sched_lock_os_thread(PyObject *module, PyObject *unused)
{
    gr_g *g = gr_getg();
    if (g != NULL) {
        gr_m *m = g->m;
        g->lockedm = m;
        m->lockedg = g;
        g->lockcount++;
    }
    Py_RETURN_NONE;
}

static PyObject *
sched_unlock_os_thread(PyObject *module, PyObject *unused)
{
    gr_g *g = gr_getg();
    if (g != NULL && g->lockcount > 0 && --g->lockcount == 0) {
        g->m->lockedg = NULL;
        g->lockedm = NULL;
    }
    Py_RETURN_NONE;
}

static const char *
gstatus_name(gr_g *g)
{
    switch (atomic_load(&g->status)) {
    case G_RUNNABLE: return "runnable";
    case G_RUNNING: return "running";
    case G_WAITING: return g->waitreason ? g->waitreason : "waiting";
    default: return NULL;
    }
}

/* _goroutines() -> [(goid, state, frame_or_None)]: the raw material of
 * runtime.stack(), formatted in Python. */
static PyObject *
sched_goroutines(PyObject *module, PyObject *unused)
{
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&sched.lock);
    size_t n = 0;
    for (gr_g *g = sched.allg; g; g = g->allnext) {
        n++;
    }
    gr_g **gs = malloc((n + 1) * sizeof *gs);
    n = 0;
    for (gr_g *g = sched.allg; g && gs; g = g->allnext) {
        gs[n++] = g;
    }
    pthread_mutex_unlock(&sched.lock);
    if (gs == NULL) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    gr_g *self = gr_getg();
    for (size_t i = n; i-- > 0;) {
        gr_g *g = gs[i];
        const char *st = gstatus_name(g);
        if (st == NULL) {
            continue;
        }
        PyObject *frame = NULL;
        /* Frames of a goroutine that is off-CPU are stable while we hold
         * the GIL; a running one is only ourselves (others would need
         * the GIL we hold). */
        int s = atomic_load(&g->status);
        if (g == self || s == G_WAITING || s == G_RUNNABLE) {
            frame = (PyObject *)PyThreadState_GetFrame(g->tstate);
        }
        PyObject *item = Py_BuildValue("(KsO)", (unsigned long long)g->goid,
                                       g == self ? "running" : st,
                                       frame ? frame : Py_None);
        Py_XDECREF(frame);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            free(gs);
            return NULL;
        }
        Py_DECREF(item);
    }
    free(gs);
    return out;
}

static PyObject *
sched_stats(PyObject *module, PyObject *unused)
{
    long long running = 0, runnable = 0, parked = 0;
    pthread_mutex_lock(&sched.lock);
    for (gr_g *g = sched.allg; g; g = g->allnext) {
        switch (atomic_load(&g->status)) {
        case G_RUNNING: running++; break;
        case G_RUNNABLE: runnable++; break;
        case G_WAITING: parked++; break;
        }
    }
    int ms = sched.mcount, midle = sched.nmidle;
    pthread_mutex_unlock(&sched.lock);
    return Py_BuildValue(
        "{sKsLsLsLsLsisisisisKsKsKsKsisl}",
        "goroutines_created", (unsigned long long)atomic_load(&sched.ncreated),
        "goroutines", (long long)atomic_load(&sched.ngoroutines),
        "running", running, "runnable", runnable, "parked", parked,
        "ms", ms, "idle_ms", midle,
        "ps", atomic_load(&sched.gomaxprocs),
        "idle_ps", atomic_load(&sched.npidle),
        "steals", (unsigned long long)atomic_load(&sched.nsteals),
        "handoffs", (unsigned long long)atomic_load(&sched.nhandoffs),
        "preemptions", (unsigned long long)atomic_load(&sched.npreempts),
        "context_switches", (unsigned long long)atomic_load(&sched.nswitches),
        "spinning_ms", atomic_load(&sched.nmspinning),
        "timers", atomic_load(&gr_timers_pending));
}

/* _preempt_stats(stepaside_ns=-1, /): preempt_cb's outcome counters, and
 * for tests, how long a step-aside waits for its hand-off (ns; 0 puts
 * back GR_RETAKE_NS; negative leaves it).  Not public API. */
static PyObject *
sched_preempt_stats(PyObject *module, PyObject *const *args, Py_ssize_t n)
{
    if (n > 1) {
        PyErr_SetString(PyExc_TypeError,
                        "_preempt_stats takes at most 1 argument");
        return NULL;
    }
    if (n == 1) {
        long long ns = PyLong_AsLongLong(args[0]);
        if (ns == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (ns >= 1000000000LL) {
            PyErr_SetString(PyExc_ValueError,
                            "stepaside_ns must be under one second");
            return NULL;
        }
        if (ns >= 0) {
            atomic_store(&sched.stepaside_ns, ns);
        }
    }
    return Py_BuildValue(
        "{sKsKsKsKsK}",
        "stepasides", (unsigned long long)atomic_load(&sched.nstepaside),
        "stepasides_own",
        (unsigned long long)atomic_load(&sched.nstepaside_own),
        "stepaside_timeouts",
        (unsigned long long)atomic_load(&sched.nstepaside_timeout),
        "stepaside_timeouts_hand_stood",
        (unsigned long long)atomic_load(&sched.nstepaside_stood),
        "hand_own_skips", (unsigned long long)atomic_load(&sched.nhand_own));
}

/* _hand_selftest(): the hand-off token's rules on a P that is not in
 * allp, for tests: a hand-off of a P, ended and made again, is another
 * hand-off, so ending the first again (a stale waiter) leaves the second
 * standing, and a G that took the GIL during the first does not take the
 * second for its own.  Returns (stale end kept the new one, tokens
 * differ).  Raises RuntimeError if a real hand-off stands. */
static PyObject *
sched_hand_selftest(PyObject *module, PyObject *unused)
{
    gr_p fake;
    memset(&fake, 0, sizeof fake);
    fake.id = (1 << HAND_PBITS) - 2;    /* above any real P's id */
    if (!hand_claim(&fake)) {
        PyErr_SetString(PyExc_RuntimeError, "a hand-off stands");
        return NULL;
    }
    unsigned long long first = atomic_load(&sched.hand);
    handoff_over(&fake);
    if (!hand_claim(&fake)) {
        PyErr_SetString(PyExc_RuntimeError, "a hand-off stands");
        return NULL;
    }
    unsigned long long second = atomic_load(&sched.hand);
    handoff_end(first);                 /* the stale waiter */
    bool kept = atomic_load(&sched.hand) == second;
    handoff_over(&fake);
    return Py_BuildValue("(OO)", kept ? Py_True : Py_False,
                         first != second ? Py_True : Py_False);
}

/* ---- fork ------------------------------------------------------------
 *
 * The child of fork() has one thread: the one that forked.  Every other M,
 * sysmon and the timer thread are gone, and so is every goroutine but the
 * forking one (if a goroutine forked), as Python's threading loses every
 * thread but the forking one.  The child gets a working runtime.
 * module.c registers the handlers and runs timer.c's inside these (timer.c
 * is above this file; its lock is a leaf):
 *
 *   prepare (pthread_atfork, in fork() itself, after the Python before-
 *   hooks): wait until no M is between giving the GIL back and the end of
 *   its park's unlock function -- the only place an M holds a channel or
 *   sync lock without the GIL; the forking thread holds the GIL, so no M
 *   can enter that window again -- then take sched.lock and the timer
 *   lock (L.lock, a leaf), so the child's copies are consistent.
 *   parent: release them.
 *   child (pure C): fresh locks; every G but the forking one becomes a
 *   ghost (gr_forkgen moves past its forkgen: never run, readied or
 *   reused; its thread state is freed by
 *   CPython's PyOS_AfterFork_Child, and channel queues may still point at
 *   its waiters, whose claim now fails, so no value is handed to it); all
 *   run queues and free lists empty; every P idle except the forking M's;
 *   counters recomputed.  Ghost G structs and stacks are leaked (the pages
 *   are shared copy-on-write with the parent until written).
 *   after_in_child (os.register_at_fork, GIL held, after CPython deleted
 *   the other thread states): a new thread state for the forking M, and
 *   sysmon and the timer thread started again if the parent had them.
 *
 * A goroutine that forks is the child's main goroutine: when it ends, the
 * child exits (forkmain_exit), as a Go program does when main returns.
 */
void
gr_sched_fork_prepare(void)
{
    while (atomic_load(&sched.nunlocking) != 0) {
        sched_yield();
    }
    pthread_mutex_lock(&sched.lock);
}

void
gr_sched_fork_parent(void)
{
    pthread_mutex_unlock(&sched.lock);
}

void
gr_sched_fork_child(void)
{
    pthread_mutex_init(&sched.lock, NULL);
    /* Before any pidleput_locked below (it takes handmu): a thread that
     * stepped aside in the parent does not exist here. */
    atomic_store(&sched.hand, 0);
    handcond_init();
    atomic_fetch_add(&gr_forkgen, 1);
    gr_m *m = tls_m;
    gr_g *g = m != NULL ? m->curg : NULL;
    /* Every G but g is now a ghost (its forkgen is older): no walk over
     * allg, whose pages a fork followed by exec would otherwise copy. */
    sched.allg = g;
    if (g != NULL) {
        g->forkgen = atomic_load(&gr_forkgen);
        g->allnext = NULL;
        g->schedlink = NULL;
    }
    sched.forkg = g;
    sched.runqhead = sched.runqtail = NULL;
    atomic_store(&sched.runqsize, 0);
    sched.midle = NULL;
    sched.nmidle = 0;
    sched.mcount = m != NULL ? 1 : 0;
    sched.gfree = NULL;
    sched.ngfree = 0;
    atomic_store(&sched.nmspinning, 0);
    atomic_store(&sched.nmpless, 0);
    atomic_store(&sched.nunlocking, 0);
    atomic_store(&sched.nthreadblocked, 0);
    atomic_store(&sched.nactive, g != NULL ? 1 : 0);
    atomic_store(&sched.ngoroutines, g != NULL ? 1 : 0);
    atomic_store(&sched.npidle, 0);
    sched.pidle = NULL;
    gr_p *keep = m != NULL ? m->p : NULL;
    int n = atomic_load(&sched.nallp);
    int np = atomic_load(&sched.gomaxprocs);
    for (int i = n - 1; i >= 0; i--) {
        gr_p *p = sched.allp[i];
        atomic_store(&p->runqhead, 0);
        atomic_store(&p->runqtail, 0);
        atomic_store(&p->runnext, NULL);
        p->gfree = NULL;
        p->ngfree = 0;
        p->sysmontick = 0;
        p->sysmonwhen = 0;
        p->sysmondetached = false;
        p->lastattached = 0;
        p->link = NULL;
        if (p == keep) {
            atomic_store(&p->status, P_RUNG);
            atomic_store(&p->m, m);
            atomic_store(&p->curg, g);
            continue;
        }
        atomic_store(&p->status, P_IDLE);
        atomic_store(&p->m, NULL);
        atomic_store(&p->curg, NULL);
        if (i < np) {
            pidleput_locked(p);
        }
    }
    if (m != NULL) {
        m->spinning = false;
        m->nextp = NULL;
        m->barrier = false;
        m->schedlink = NULL;
        m->lockedresume = false;
        gr_sema_init(&m->park);
    }
    atomic_store(&sched.preemptposted, false);
    atomic_store(&sched.sysmonup, false);   /* started by the first go() */
    /* The parent's poller M and its network waiters are gone with it. */
    atomic_store(&sched.netpolling, false);
    atomic_store(&gr_netwaiters, 0);
}

/* os.register_at_fork(after_in_child=...): GIL held, after CPython freed
 * every thread state but the current one. */
int
gr_sched_after_fork(void)
{
    gr_m *m = getm();
    gr_pystate_after_fork(m != NULL && m->curg != NULL);
    if (m != NULL) {
        /* The M's own thread state went with the others; the forking
         * goroutine's is current. */
        m->tstate = gr_pystate_new_m(sched.interp);
        if (m->tstate == NULL) {
            Py_FatalError("goroutine: cannot make a thread state for an M");
        }
    }
    /* Their threads are gone.  sysmon starts with the child's first go()
     * (newproc). */
    PyDict_Clear(gr_globals.blocked);
    return 0;
}

/* The first half of _core._shutdown() (module.c): mark the runtime as
 * exiting, as finalization does by itself (see "Shutdown" in
 * docs/design.md).  Ms stop at their next scheduling point and never touch
 * Python again; goroutines are abandoned, as in Go; later go() and
 * blocking waits raise.  Returns false if it was already exiting. */
bool
gr_sched_stop(void)
{
    return !atomic_exchange(&sched.exiting, true);
}

/* After gr_sched_stop, GIL released: wait until sysmon has left its loop
 * (at most one sleep of up to 10 ms). */
void
gr_sched_wait_sysmon(void)
{
    while (atomic_load(&sched.sysmonup)) {
        usleep(1000);
    }
}

static PyMethodDef sched_methods[] = {
    {"go", (PyCFunction)(void (*)(void))sched_go,
     METH_VARARGS | METH_KEYWORDS,
     "go(f, /, *args, **kw)\n--\n\n"
     "Start f(*args, **kw) as a goroutine on the M:N scheduler."},
    {"num_cpu", sched_num_cpu, METH_NOARGS,
     "num_cpu()\n--\n\n"
     "The number of CPUs this process can use (its affinity mask)."},
    {"gomaxprocs", (PyCFunction)(void (*)(void))sched_gomaxprocs,
     METH_FASTCALL,
     "gomaxprocs(n=0, /)\n--\n\n"
     "Set the number of Ps when n > 0; return the previous number."},
    {"num_goroutine", sched_num_goroutine, METH_NOARGS,
     "num_goroutine()\n--\n\nThe number of goroutines that exist."},
    {"goid", sched_goid, METH_NOARGS,
     "goid()\n--\n\nThe current goroutine's id (0 outside a goroutine)."},
    {"gosched", sched_gosched, METH_NOARGS,
     "gosched()\n--\n\nYield the processor so other goroutines run."},
    {"goexit", sched_goexit, METH_NOARGS,
     "goexit()\n--\n\nEnd the calling goroutine after running its defers."},
    {"lock_os_thread", sched_lock_os_thread, METH_NOARGS,
     "lock_os_thread()\n--\n\n"
     "Pin the calling goroutine to its OS thread until a matching\n"
     "unlock_os_thread(): only it runs there, and it only runs there."},
    {"unlock_os_thread", sched_unlock_os_thread, METH_NOARGS,
     "unlock_os_thread()\n--\n\nUndo one lock_os_thread()."},
    {"_goroutines", sched_goroutines, METH_NOARGS, NULL},
    {"_preempt_stats", (PyCFunction)(void (*)(void))sched_preempt_stats,
     METH_FASTCALL, NULL},
    {"_hand_selftest", sched_hand_selftest, METH_NOARGS, NULL},
    {"stats", sched_stats, METH_NOARGS,
     "stats()\n--\n\nScheduler counters: goroutines, Ms, Ps, steals, "
     "handoffs, context switches, timers."},
    {NULL, NULL, 0, NULL},
};

/* Module init, staging (state.h): the blocked-thread registry. */
int
gr_sched_init(gr_globals_t *st)
{
    st->blocked = PyDict_New();
    return st->blocked == NULL ? -1 : 0;
}

int
gr_sched_exec(PyObject *module)
{
    const char *err = gr_stack_config_error();
    if (err != NULL) {
        PyErr_SetString(PyExc_ValueError, err);
        return -1;
    }
    return PyModule_AddFunctions(module, sched_methods);
}
