/*
 * netpoll.c: Go's netpoller (runtime/netpoll.go, netpoll_epoll.go) -- a
 * goroutine that waits for a socket parks, and readiness makes it
 * runnable; N waiting connections cost no OS thread each.
 *
 * One epoll instance per process (a forked child makes its own at first
 * use: np.gen is the gr_forkgen it was made in).  Each fd is registered
 * once, edge-triggered, for everything (EPOLLIN|EPOLLOUT|EPOLLRDHUP|
 * EPOLLET), with a pollDesc as its data.  Edge-triggered means an event
 * says "this became ready since you last looked": the caller always
 * tries the system call first and waits only after EAGAIN, and an event
 * that finds nobody waiting is latched in rready/wready (Go's pdReady)
 * so that the next wait returns at once.
 *
 * Who polls (sched.c, through gr_sched_set_netpoll's table, since this
 * file sits above sched.c): findrunnable polls without blocking when it
 * has no work; an M that found no work blocks in epoll_wait instead of on
 * its semaphore when no other M is already blocked there; sysmon polls
 * when nobody has for 10 ms.  The eventfd np.evfd breaks a blocked poll
 * (wakeup()).  A readiness event hands the waiting goroutines to the
 * poller's inject function (Go's injectglist).  Deadlines are records of
 * timer.c's heap (TK_FN, without the GIL) that fire deadline_fire on the
 * timer thread.
 *
 * A plain thread never waits here: nobody might poll for it (there may be
 * no goroutine at all).  It poll(2)s the fd itself, GIL released, in
 * slices of GR_NET_SLICE_NS, rechecking close, the deadline and signals
 * between slices.
 *
 * The pollDesc (Go's): read and write wait queues of sudogs (waiter.c;
 * many goroutines may wait on one fd: a readiness event wakes them all,
 * each retries its call and the losers park again), the closing flag,
 * deadlines and their sequence numbers.  Invariants (pd->lock):
 *   pd->closing  implies  both queues are empty and no timer is armed;
 *   rq non-empty  implies  !rready (an event with waiters wakes them
 *                          rather than latching; same for wq/wready);
 *   rd == -1  iff  the read deadline has passed (a fire or a set in the
 *             past), rd == 0: none, else the monotonic ns it expires at;
 *   a deadline timer's seq (mode in bit 0) != pd->rseq/wseq << 1 | mode
 *             implies it is stale and its fire does nothing.
 * pollDescs are never freed, only reused through np.free, so an event or
 * a timer fire that raced a close may still lock one: at worst it makes
 * a spurious wake-up (the woken goroutine retries and parks again) and
 * the seq numbers, bumped at close and never reset, make stale fires
 * no-ops.
 *
 * Locks: pd->lock, then (setting deadlines) timer.c's leaf L.lock.
 * np.lock (leaf) guards the free list and the epoll and event fds.  Nothing
 * is woken under pd->lock (STYLE recipe 4).  The GIL is held by the
 * Python methods, never by poll().
 */
#define _GNU_SOURCE 1
#include "core.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* A plain thread's wait slice: close, deadline moves and Ctrl-C are seen
 * within it (waiter.c uses the same 50 ms). */
#define GR_NET_SLICE_NS 50000000
/* Events per epoll_wait: Go's 128. */
#define GR_NET_EVENTS 128

enum { MODE_R = 0, MODE_W = 1 };

typedef struct pollDesc {
    pthread_mutex_t lock;       /* guards every field below but link;
                                   never held while waking or calling
                                   Python */
    int fd;                     /* the registered fd, -1 when closed */
    unsigned gen;               /* gr_forkgen of the epoll it is on */
    bool closing;               /* close() ran: every wait fails */
    bool rready, wready;        /* an edge came with nobody waiting */
    gr_waitq rq, wq;            /* parked readers and writers */
    int64_t rd, wd;             /* deadlines: 0 none, -1 passed, else
                                   CLOCK_MONOTONIC ns */
    uint64_t rseq, wseq;        /* bumped whenever a deadline changes */
    gr_timer_rec *rt, *wt;      /* their armed timers, or NULL */
    struct pollDesc *link;      /* np.free, under np.lock */
} pollDesc;

static struct {
    pthread_mutex_t lock;       /* leaf: free list, epfd, evfd, gen */
    int epfd;                   /* -1 until the first pollDesc */
    int evfd;                   /* breaks a blocked epoll_wait */
    unsigned gen;               /* gr_forkgen epfd was made in */
    atomic_bool evpending;      /* a wakeup is in evfd, not yet read */
    pollDesc *free;             /* closed pollDescs for reuse */
} np = {.lock = PTHREAD_MUTEX_INITIALIZER, .epfd = -1, .evfd = -1};

static int64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the epoll instance --------------------------------------------- */

/* The epoll fd of this process, made (again, in a forked child: the
 * parent's registrations are not ours) on first use.  np.lock held.
 * -1 with errno. */
static int
epoll_locked(void)
{
    unsigned gen = atomic_load(&gr_forkgen);
    if (np.epfd >= 0 && np.gen == gen) {
        return np.epfd;
    }
    if (np.epfd >= 0) {
        /* A forked child: the parent's epoll fd is shared with it. */
        close(np.epfd);
        close(np.evfd);
        np.epfd = np.evfd = -1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        return -1;
    }
    int ev = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ev < 0) {
        int e = errno;
        close(ep);
        errno = e;
        return -1;
    }
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &np};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) < 0) {
        int err = errno;
        close(ep);
        close(ev);
        errno = err;
        return -1;
    }
    atomic_store(&np.evpending, false);
    np.evfd = ev;
    np.epfd = ep;
    np.gen = gen;
    return ep;
}

/* This process's epoll fd (fd[0]) and eventfd (fd[1]), or -1s when it
 * has none yet (a forked child has none until its first pollDesc).
 * Read under np.lock: a thread that polls must see the fds made by
 * another (TSan checks it through the fds themselves: an acquire load of
 * epfd did not satisfy it, a lock does).  Uncontended but for the first
 * registrations; no GIL needed. */
static void
np_fds(int fd[2])
{
    pthread_mutex_lock(&np.lock);
    bool ours = np.epfd >= 0 && np.gen == atomic_load(&gr_forkgen);
    fd[0] = ours ? np.epfd : -1;
    fd[1] = ours ? np.evfd : -1;
    pthread_mutex_unlock(&np.lock);
}

/* Register pd->fd on this process's epoll.  pd->lock held.  0 or -1 with
 * errno. */
static int
pd_register(pollDesc *pd)
{
    pthread_mutex_lock(&np.lock);
    int ep = epoll_locked();
    unsigned gen = np.gen;
    pthread_mutex_unlock(&np.lock);
    if (ep < 0) {
        return -1;
    }
    struct epoll_event e = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.ptr = pd,
    };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, pd->fd, &e) < 0) {
        return -1;
    }
    pd->gen = gen;
    return 0;
}

static void
netpoll_wakeup(void)
{
    int fd[2];
    np_fds(fd);
    int ev = fd[1];
    if (ev < 0 || atomic_exchange(&np.evpending, true)) {
        return;     /* one pending wakeup is enough (Go's netpollWakeSig) */
    }
    uint64_t one = 1;
    ssize_t r = write(ev, &one, sizeof one);
    (void)r;        /* EAGAIN: the counter is full, a wakeup is pending */
}

/* Hand every goroutine of a wake list to inject; a thread waiter (never
 * on a pollDesc today, but the queues are waiter.c's) is woken as usual.
 * No lock held. */
static int
inject_list(gr_wakelist *wl, gr_inject_fn inject, void *ctx)
{
    int n = 0;
    gr_sudog *sg = wl->head;
    wl->head = wl->tail = NULL;
    while (sg != NULL) {
        gr_sudog *next = sg->next;  /* sg is gone once its G runs */
        gr_waiter *w = sg->w;
        if (w->kind == GR_WAIT_G) {
            inject(w->g, ctx);
            n++;
        }
        else {
            gr_waiter_wake(w);
        }
        sg = next;
    }
    return n;
}

/* Take every open waiter of q onto wl; success tells it why: true for
 * readiness, false for close or deadline.  pd->lock held. */
static void
take_all(gr_waitq *q, bool success, gr_wakelist *wl)
{
    gr_sudog *sg;
    while ((sg = gr_waitq_dequeue(q)) != NULL) {
        sg->success = success;
        gr_wakelist_add(wl, sg);
    }
}

/* The scheduler's poll (gr_netpoll_ops.poll): Go's netpoll(delay). */
static int
netpoll(int64_t delay_ns, gr_inject_fn inject, void *ctx)
{
    int fd[2];
    np_fds(fd);
    int ep = fd[0];
    if (ep < 0) {
        return 0;   /* nothing registered in this process yet */
    }
    int ms;
    if (delay_ns < 0) {
        ms = -1;
    }
    else if (delay_ns == 0) {
        ms = 0;
    }
    else {
        int64_t m = (delay_ns + 999999) / 1000000;
        ms = m > 1000000000 ? 1000000000 : (int)m;
    }
    struct epoll_event evs[GR_NET_EVENTS];
    int n = epoll_wait(ep, evs, GR_NET_EVENTS, ms);
    if (n <= 0) {
        return 0;   /* timeout, or EINTR: the caller looks again */
    }
    int injected = 0;
    gr_wakelist wl = {NULL, NULL};
    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == &np) {
            uint64_t v;
            ssize_t r = read(fd[1], &v, sizeof v);
            (void)r;
            atomic_store(&np.evpending, false);
            continue;
        }
        pollDesc *pd = evs[i].data.ptr;
        uint32_t e = evs[i].events;
        bool r = e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR);
        bool w = e & (EPOLLOUT | EPOLLHUP | EPOLLERR);
        pthread_mutex_lock(&pd->lock);
        if (!pd->closing) {
            if (r) {
                take_all(&pd->rq, true, &wl);
                pd->rready = wl.head == NULL;
            }
            if (w) {
                gr_sudog *before = wl.tail;
                take_all(&pd->wq, true, &wl);
                pd->wready = wl.tail == before;
            }
        }
        pthread_mutex_unlock(&pd->lock);
        injected += inject_list(&wl, inject, ctx);
    }
    return injected;
}

static const gr_netpoll_ops netpoll_ops = {
    .poll = netpoll,
    .wakeup = netpoll_wakeup,
};

/* ---- deadlines ------------------------------------------------------ */

/* A deadline timer fired (timer thread, no GIL): unless stale, mark the
 * deadline passed and wake that direction's waiters. */
static void
deadline_fire(void *arg, uint64_t seq)
{
    pollDesc *pd = arg;
    int mode = (int)(seq & 1);
    gr_wakelist wl = {NULL, NULL};
    pthread_mutex_lock(&pd->lock);
    uint64_t cur = mode == MODE_R ? pd->rseq : pd->wseq;
    if (!pd->closing && (seq >> 1) == cur) {
        if (mode == MODE_R) {
            pd->rd = -1;
            take_all(&pd->rq, false, &wl);
        }
        else {
            pd->wd = -1;
            take_all(&pd->wq, false, &wl);
        }
    }
    pthread_mutex_unlock(&pd->lock);
    gr_wakelist_wake(&wl);
}

/* ---- waiting -------------------------------------------------------- */

/* Why a wait on pd in `mode` must fail now: 1 closed, 2 deadline passed,
 * 0 not at all.  pd->lock held. */
static int
pd_check(pollDesc *pd, int mode)
{
    if (pd->closing) {
        return 1;
    }
    int64_t d = mode == MODE_R ? pd->rd : pd->wd;
    if (d == -1 || (d > 0 && d <= mono_ns())) {
        return 2;
    }
    return 0;
}

static PyObject *
raise_check(int why)
{
    if (why == 1) {
        PyErr_SetString(gr_globals.ErrClosed,
                        "use of closed network connection");
    }
    else {
        PyErr_SetString(PyExc_TimeoutError, "i/o timeout");
    }
    return NULL;
}

/* A plain thread waits with poll(2) in slices.  pd->lock held on entry,
 * released on return.  GIL held.  0 ready (or maybe ready), -1 with an
 * exception. */
static int
thread_wait(pollDesc *pd, int mode)
{
    int fd = pd->fd;
    for (;;) {
        int why = pd_check(pd, mode);
        int64_t d = mode == MODE_R ? pd->rd : pd->wd;
        bool *ready = mode == MODE_R ? &pd->rready : &pd->wready;
        if (why == 0 && *ready) {
            *ready = false;
            why = -1;
        }
        pthread_mutex_unlock(&pd->lock);
        if (why == -1) {
            return 0;
        }
        if (why != 0) {
            raise_check(why);
            return -1;
        }
        int64_t slice = GR_NET_SLICE_NS;
        if (d > 0 && d - mono_ns() < slice) {
            slice = d - mono_ns();
        }
        int ms = slice <= 0 ? 0 : (int)((slice + 999999) / 1000000);
        struct pollfd p = {.fd = fd,
                           .events = mode == MODE_R ? POLLIN : POLLOUT};
        int r;
        Py_BEGIN_ALLOW_THREADS
        r = poll(&p, 1, ms);
        Py_END_ALLOW_THREADS
        if (r > 0) {
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
        pthread_mutex_lock(&pd->lock);
    }
}

/* Wait until pd's fd may be ready for `mode` (Go's netpollblock plus
 * netpollcheckerr).  GIL held.  0: retry the call; -1 with ErrClosed,
 * TimeoutError("i/o timeout") or OSError. */
static int
pd_wait(pollDesc *pd, int mode)
{
    pthread_mutex_lock(&pd->lock);
    if (!pd->closing && pd->gen != atomic_load(&gr_forkgen)) {
        /* Made in the parent of this forked child: register it on our
         * epoll (the parent's registrations stay with the parent). */
        if (pd_register(pd) < 0) {
            pthread_mutex_unlock(&pd->lock);
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    if (gr_getg() == NULL) {
        return thread_wait(pd, mode);
    }
    int why = pd_check(pd, mode);
    if (why != 0) {
        pthread_mutex_unlock(&pd->lock);
        raise_check(why);
        return -1;
    }
    bool *ready = mode == MODE_R ? &pd->rready : &pd->wready;
    if (*ready) {
        *ready = false;
        pthread_mutex_unlock(&pd->lock);
        return 0;
    }
    gr_sudog sg;
    memset(&sg, 0, sizeof sg);
    /* Counted before the park publishes it: the deadlock check must never
     * see it parked and uncounted. */
    atomic_fetch_add(&gr_netwaiters, 1);
    gr_block_on(mode == MODE_R ? &pd->rq : &pd->wq, &sg, false, &pd->lock,
                "IO wait");
    if (atomic_fetch_sub(&gr_netwaiters, 1) == 1 && gr_sched_netpolling()) {
        /* The last one: the M blocked in the poll goes back to sleeping
         * as an idle M (sched.c's gr_sched_netpolling says why this
         * order loses no wake-up). */
        netpoll_wakeup();
    }
    if (sg.success) {
        return 0;   /* ready, even if a deadline passed meanwhile (Go) */
    }
    pthread_mutex_lock(&pd->lock);
    why = pd_check(pd, mode);
    pthread_mutex_unlock(&pd->lock);
    if (why != 0) {
        raise_check(why);
        return -1;
    }
    return 0;       /* a deadline moved: look again */
}

/* Close pd (Go's pollUnblock + pollClose): fail every wait from now on,
 * wake the waiting ones, unregister.  GIL held or not. */
static void
pd_evict(pollDesc *pd)
{
    gr_wakelist wl = {NULL, NULL};
    gr_timer_rec *rt, *wt;
    pthread_mutex_lock(&pd->lock);
    if (pd->closing) {
        pthread_mutex_unlock(&pd->lock);
        return;
    }
    pd->closing = true;
    pd->rseq++;
    pd->wseq++;
    rt = pd->rt;
    wt = pd->wt;
    pd->rt = pd->wt = NULL;
    take_all(&pd->rq, false, &wl);
    take_all(&pd->wq, false, &wl);
    if (pd->fd >= 0 && pd->gen == atomic_load(&gr_forkgen)) {
        /* Before the fd is closed: a closed fd leaves epoll by itself
         * only once every duplicate of it is closed too. */
        int fd[2];
        np_fds(fd);
        epoll_ctl(fd[0], EPOLL_CTL_DEL, pd->fd, NULL);
    }
    pd->fd = -1;
    pthread_mutex_unlock(&pd->lock);
    if (rt != NULL) {
        gr_timer_fn_free(rt);
    }
    if (wt != NULL) {
        gr_timer_fn_free(wt);
    }
    gr_wakelist_wake(&wl);
}

/* Set the deadline of the modes in `modes` (bit MODE_R, bit MODE_W) to
 * monotonic `when` (0: none, -1: passed).  Waiters already parked see it
 * (Go's poll_runtime_pollSetDeadline).  GIL held; 0 or -1 with an
 * exception. */
static int
pd_set_deadline(pollDesc *pd, int modes, int64_t when)
{
    gr_timer_rec *newt[2] = {NULL, NULL}, *old[2] = {NULL, NULL};
    if (when > 0) {
        for (int mode = 0; mode < 2; mode++) {
            if (modes & (1 << mode)) {
                newt[mode] = gr_timer_fn_new(deadline_fire, pd, false);
                if (newt[mode] == NULL) {
                    if (mode == MODE_W && newt[MODE_R] != NULL) {
                        gr_timer_fn_free(newt[MODE_R]);
                    }
                    return -1;
                }
            }
        }
    }
    gr_wakelist wl = {NULL, NULL};
    pthread_mutex_lock(&pd->lock);
    bool closing = pd->closing;
    for (int mode = 0; mode < 2; mode++) {
        if (!(modes & (1 << mode))) {
            continue;
        }
        uint64_t *seq = mode == MODE_R ? &pd->rseq : &pd->wseq;
        int64_t *d = mode == MODE_R ? &pd->rd : &pd->wd;
        gr_timer_rec **t = mode == MODE_R ? &pd->rt : &pd->wt;
        (*seq)++;
        old[mode] = *t;
        *t = NULL;
        *d = when;
        if (closing) {
            continue;   /* its waits fail anyway; nothing to arm */
        }
        if (newt[mode] != NULL) {
            *t = newt[mode];
            newt[mode] = NULL;
            gr_timer_fn_add(*t, when, *seq << 1 | (uint64_t)mode);
        }
        else if (when == -1) {
            take_all(mode == MODE_R ? &pd->rq : &pd->wq, false, &wl);
        }
        else {
            /* Cleared or moved: parked waiters look again (a deadline
             * that moved into the past is handled above). */
        }
    }
    pthread_mutex_unlock(&pd->lock);
    for (int mode = 0; mode < 2; mode++) {
        if (old[mode] != NULL) {
            gr_timer_fn_free(old[mode]);
        }
        if (newt[mode] != NULL) {   /* closing: never armed */
            gr_timer_fn_free(newt[mode]);
        }
    }
    gr_wakelist_wake(&wl);
    return 0;
}

/* ---- the Python type: _core.PollDesc --------------------------------- */

typedef struct {
    PyObject_HEAD
    pollDesc *pd;               /* ours until dealloc returns it */
} pdobject;

/* A pollDesc for fd from the free list or new, registered.  GIL held.
 * NULL with an exception. */
static pollDesc *
pd_alloc(int fd)
{
    pthread_mutex_lock(&np.lock);
    pollDesc *pd = np.free;
    if (pd != NULL) {
        np.free = pd->link;
    }
    pthread_mutex_unlock(&np.lock);
    if (pd == NULL) {
        pd = calloc(1, sizeof *pd);
        if (pd == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        pthread_mutex_init(&pd->lock, NULL);
    }
    pthread_mutex_lock(&pd->lock);
    /* rseq and wseq are kept from its last use: stale fires stay stale. */
    pd->fd = fd;
    pd->closing = false;
    pd->rready = pd->wready = false;
    pd->rd = pd->wd = 0;
    pd->rt = pd->wt = NULL;
    pd->rq.head = pd->rq.tail = pd->wq.head = pd->wq.tail = NULL;
    pd->link = NULL;
    int r = pd_register(pd);
    int err = errno;
    if (r < 0) {
        pd->closing = true;
        pd->fd = -1;
    }
    pthread_mutex_unlock(&pd->lock);
    if (r < 0) {
        pthread_mutex_lock(&np.lock);
        pd->link = np.free;
        np.free = pd;
        pthread_mutex_unlock(&np.lock);
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    return pd;
}

static PyObject *
pdobject_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    int fd;
    static char *kwlist[] = {"fd", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "i:PollDesc", kwlist,
                                     &fd)) {
        return NULL;
    }
    if (fd < 0) {
        PyErr_SetString(PyExc_ValueError, "negative file descriptor");
        return NULL;
    }
    pdobject *self = (pdobject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->pd = pd_alloc(fd);
    if (self->pd == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
pdobject_dealloc(pdobject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    pollDesc *pd = self->pd;
    if (pd != NULL) {
        /* Nobody waits on it: every waiter holds a reference to self. */
        pd_evict(pd);
        pthread_mutex_lock(&np.lock);
        pd->link = np.free;
        np.free = pd;
        pthread_mutex_unlock(&np.lock);
    }
    tp->tp_free(self);
    Py_DECREF(tp);
}

static int
mode_arg(PyObject *o, int *modes)
{
    const char *s = PyUnicode_Check(o) ? PyUnicode_AsUTF8(o) : NULL;
    if (s != NULL && strcmp(s, "r") == 0) {
        *modes = 1 << MODE_R;
    }
    else if (s != NULL && strcmp(s, "w") == 0) {
        *modes = 1 << MODE_W;
    }
    else if (s != NULL && strcmp(s, "rw") == 0) {
        *modes = (1 << MODE_R) | (1 << MODE_W);
    }
    else {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError,
                     "mode must be 'r', 'w' or 'rw', not %R", o);
        return -1;
    }
    return 0;
}

static PyObject *
pdobject_wait(pdobject *self, PyObject *arg)
{
    int modes;
    if (mode_arg(arg, &modes) < 0) {
        return NULL;
    }
    if (modes == ((1 << MODE_R) | (1 << MODE_W))) {
        PyErr_SetString(PyExc_ValueError, "wait: mode must be 'r' or 'w'");
        return NULL;
    }
    if (pd_wait(self->pd, modes == 1 << MODE_R ? MODE_R : MODE_W) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
pdobject_check(pdobject *self, PyObject *arg)
{
    int modes;
    if (mode_arg(arg, &modes) < 0) {
        return NULL;
    }
    pollDesc *pd = self->pd;
    pthread_mutex_lock(&pd->lock);
    int why = 0;
    for (int mode = 0; mode < 2 && why == 0; mode++) {
        if (modes & (1 << mode)) {
            why = pd_check(pd, mode);
        }
    }
    pthread_mutex_unlock(&pd->lock);
    if (why != 0) {
        return raise_check(why);
    }
    Py_RETURN_NONE;
}

static PyObject *
pdobject_set_deadline(pdobject *self, PyObject *const *args,
                      Py_ssize_t nargs)
{
    int modes;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "set_deadline(t, mode) takes 2 arguments");
        return NULL;
    }
    if (mode_arg(args[1], &modes) < 0) {
        return NULL;
    }
    int64_t when = 0;
    if (args[0] != Py_None) {
        double t = PyFloat_AsDouble(args[0]);
        if (t == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        if (isnan(t)) {
            PyErr_SetString(PyExc_ValueError, "deadline is NaN");
            return NULL;
        }
        /* An absolute time on time.now()'s (wall) clock, kept on the
         * monotonic one from here: a clock step does not move it. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double left = t - ((double)ts.tv_sec + ts.tv_nsec * 1e-9);
        int64_t now = mono_ns();
        if (left <= 0) {
            when = -1;
        }
        else if (left > 4.6e9) {
            when = INT64_MAX / 2;   /* about 146 years: never */
        }
        else {
            when = now + (int64_t)ceil(left * 1e9);
        }
    }
    if (pd_set_deadline(self->pd, modes, when) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- the calls: try, wait on EAGAIN, retry (Go's fd.Read/Write) ------
 *
 * The system calls run with the GIL held: the fd is non-blocking, so they
 * never block, and releasing the GIL around each (as the socket module
 * does) made sysmon see the goroutine "in a blocking call" while it only
 * waited to take the GIL back, and hand its P to a new M: 2,000 echo
 * connections in one process grew to 16-24 OS threads that way, 10
 * without it.
 */

/* The fd to use now, or -1 with ErrClosed / TimeoutError raised (Go's
 * prepareRead/prepareWrite).  GIL held. */
static int
pd_prepare(pollDesc *pd, int mode)
{
    pthread_mutex_lock(&pd->lock);
    int why = pd_check(pd, mode);
    int fd = pd->fd;
    pthread_mutex_unlock(&pd->lock);
    if (why != 0) {
        raise_check(why);
        return -1;
    }
    return fd;
}

/* A failed call's errno: 1 wait and retry, 0 retry now, -1 raised. */
static int
pd_failed(pollDesc *pd, int err)
{
    if (err == EAGAIN || err == EWOULDBLOCK) {
        return 1;
    }
    if (err == EINTR) {
        return PyErr_CheckSignals() < 0 ? -1 : 0;
    }
    pthread_mutex_lock(&pd->lock);
    bool closing = pd->closing;
    pthread_mutex_unlock(&pd->lock);
    if (closing) {
        raise_check(1);     /* EBADF from a close that raced the call */
    }
    else {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
    }
    return -1;
}

/* recv into buf (at most n bytes), waiting as needed: the count, 0 at
 * EOF, -1 with an exception.  GIL held. */
static char *scratch_here(void);

/* recv up to n bytes into buf, parking while there are none; buf NULL:
 * into this thread's scratch (pdobject_read), looked up again after each
 * park.  The count, 0 at EOF, or -1 with an exception. */
static Py_ssize_t
pd_recv(pollDesc *pd, char *buf, Py_ssize_t n)
{
    for (;;) {
        int fd = pd_prepare(pd, MODE_R);
        if (fd < 0) {
            return -1;
        }
        ssize_t r = recv(fd, buf != NULL ? buf : scratch_here(), (size_t)n,
                         0);
        if (r >= 0) {
            return r;
        }
        int w = pd_failed(pd, errno);
        if (w < 0 || (w == 1 && pd_wait(pd, MODE_R) < 0)) {
            return -1;
        }
    }
}

/* read(n): the first GR_NET_READ_FIRST bytes land in this OS thread's
 * scratch buffer, so a reader that parks -- the goroutine of an idle
 * connection -- holds no buffer of its own.  Allocating n bytes before
 * the recv cost a page of RSS per parked reader (the bytes header is
 * written): 9.0 KiB per idle connection against 4.9 with read(1)
 * (benchmarks/http.py, 5,000 connections; docs/benchmarks.md).  Not on
 * the goroutine's stack: a 2 KiB array there pushed the park path onto
 * one more stack page, the same 4 KiB again.  Per thread, not per
 * process: nothing parks or switches between the recv and the copy, but
 * two Ms (or two interpreters' GILs) may read at once.  If the first
 * part fills, what else is queued (FIONREAD, up to n) is taken without
 * waiting: a recv that found nothing could consume a pending error (a
 * reset) that belongs to the next read. */
#define GR_NET_READ_FIRST 2048
static _Thread_local char read_scratch[GR_NET_READ_FIRST];

/* This OS thread's scratch.  Never inlined, and called again after any
 * park: a goroutine can resume on another thread, and the compiler would
 * otherwise keep the first thread's address (sched.c's getm). */
__attribute__((noinline)) static char *
scratch_here(void)
{
    char *p = read_scratch;
    __asm__ volatile("" ::: "memory");
    return p;
}

static PyObject *
pdobject_read(pdobject *self, PyObject *arg)
{
    Py_ssize_t n = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 1) {
        PyErr_Format(PyExc_ValueError,
                     "read size must be at least 1, not %zd", n);
        return NULL;
    }
    Py_ssize_t m = n < GR_NET_READ_FIRST ? n : GR_NET_READ_FIRST;
    Py_ssize_t got = pd_recv(self->pd, NULL, m);
    if (got < 0) {
        return NULL;
    }
    /* The recv ran on this thread, and nothing has parked since. */
    const char *first = scratch_here();
    Py_ssize_t more = 0;
    int fd = -1;
    if (got == m && m < n) {
        /* The GIL is held from pd_recv to here: no close came between. */
        pthread_mutex_lock(&self->pd->lock);
        fd = self->pd->closing ? -1 : self->pd->fd;
        pthread_mutex_unlock(&self->pd->lock);
        int queued = 0;
        if (fd >= 0 && ioctl(fd, FIONREAD, &queued) == 0 && queued > 0) {
            more = queued < n - got ? queued : n - got;
        }
    }
    PyObject *b = PyBytes_FromStringAndSize(NULL, got + more);
    if (b == NULL) {
        return NULL;
    }
    memcpy(PyBytes_AS_STRING(b), first, (size_t)got);
    if (more > 0) {
        ssize_t r = recv(fd, PyBytes_AS_STRING(b) + got, (size_t)more,
                         MSG_DONTWAIT);
        if (r < more && _PyBytes_Resize(&b, got + (r > 0 ? r : 0)) < 0) {
            return NULL;
        }
    }
    return b;
}

static PyObject *
pdobject_read_into(pdobject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    Py_ssize_t got = view.len == 0 ? 0 : pd_recv(self->pd, view.buf,
                                                 view.len);
    PyBuffer_Release(&view);
    return got < 0 ? NULL : PyLong_FromSsize_t(got);
}

static PyObject *
pdobject_write(pdobject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    /* The buffer stays valid while parked: view holds its exporter. */
    Py_ssize_t off = 0;
    int failed = 0;
    do {
        int fd = pd_prepare(self->pd, MODE_W);
        if (fd < 0) {
            failed = 1;
            break;
        }
        ssize_t r = send(fd, (char *)view.buf + off, (size_t)(view.len - off),
                         MSG_NOSIGNAL);
        if (r >= 0) {
            off += r;
            continue;
        }
        int w = pd_failed(self->pd, errno);
        if (w < 0 || (w == 1 && pd_wait(self->pd, MODE_W) < 0)) {
            failed = 1;
            break;
        }
    } while (off < view.len);
    Py_ssize_t len = view.len;
    PyBuffer_Release(&view);
    return failed ? NULL : PyLong_FromSsize_t(len);
}

static PyObject *
pdobject_accept(pdobject *self, PyObject *unused)
{
    for (;;) {
        int fd = pd_prepare(self->pd, MODE_R);
        if (fd < 0) {
            return NULL;
        }
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0) {
            return PyLong_FromLong(c);
        }
        int err = errno;
        if (err == ECONNABORTED || err == EPROTO) {
            continue;       /* the peer gave up before we took it (Go) */
        }
        int w = pd_failed(self->pd, err);
        if (w < 0 || (w == 1 && pd_wait(self->pd, MODE_R) < 0)) {
            return NULL;
        }
    }
}

/* An int argument (PyLong_AsInt is 3.13+).  0 or -1 with an exception. */
static int
int_arg(PyObject *o, int *out)
{
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "int out of range");
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* A sockaddr from Python's address forms: (host, port) for AF_INET,
 * (host, port[, flowinfo, scope_id]) for AF_INET6, a path for AF_UNIX.
 * Numeric hosts only (net.py resolves names first).  0 or -1 with an
 * exception. */
static int
sockaddr_arg(int family, PyObject *addr, struct sockaddr_storage *ss,
             socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_UNIX) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        PyObject *b = NULL;
        if (!PyUnicode_FSConverter(addr, &b)) {
            return -1;
        }
        Py_ssize_t n = PyBytes_GET_SIZE(b);
        if ((size_t)n >= sizeof un->sun_path) {
            Py_DECREF(b);
            PyErr_SetString(PyExc_OSError, "AF_UNIX path too long");
            return -1;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, PyBytes_AS_STRING(b), (size_t)n);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        Py_DECREF(b);
        return 0;
    }
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope_id = 0;
    if (!PyArg_ParseTuple(addr, "si|II:connect", &host, &port, &flowinfo,
                          &scope_id)) {
        return -1;
    }
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_OverflowError,
                        "connect(): port must be 0-65535.");
        return -1;
    }
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1) {
            goto bad;
        }
        *len = sizeof *in;
        return 0;
    }
    if (family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        in6->sin6_flowinfo = htonl(flowinfo);
        in6->sin6_scope_id = scope_id;
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1) {
            goto bad;
        }
        *len = sizeof *in6;
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "unsupported address family %d", family);
    return -1;
bad:
    PyErr_Format(PyExc_ValueError, "not a numeric address: %R", addr);
    return -1;
}

/* connect, waiting while it is in progress (Go's netFD.connect): GIL
 * held, only the wait parks. */
static PyObject *
pdobject_connect(pdobject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "connect(family, address) takes 2 arguments");
        return NULL;
    }
    int family;
    if (int_arg(args[0], &family) < 0) {
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    if (sockaddr_arg(family, args[1], &ss, &len) < 0) {
        return NULL;
    }
    int fd = pd_prepare(self->pd, MODE_W);
    if (fd < 0) {
        return NULL;
    }
    int err = 0;
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        err = errno;
    }
    while (err == EINPROGRESS || err == EALREADY || err == EINTR) {
        if (pd_wait(self->pd, MODE_W) < 0) {
            return NULL;
        }
        socklen_t elen = sizeof err;
        fd = pd_prepare(self->pd, MODE_W);
        if (fd < 0) {
            return NULL;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) {
            err = errno;
        }
        if (err == 0) {
            /* SO_ERROR is 0 both when connected and while still in
             * progress after a spurious wake: ask the peer's name. */
            struct sockaddr_storage peer;
            socklen_t plen = sizeof peer;
            if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0) {
                err = errno == ENOTCONN ? EINPROGRESS : errno;
            }
        }
    }
    if (err != 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *
pdobject_close(pdobject *self, PyObject *unused)
{
    pd_evict(self->pd);
    Py_RETURN_NONE;
}

static PyObject *
pdobject_fileno(pdobject *self, PyObject *unused)
{
    pthread_mutex_lock(&self->pd->lock);
    int fd = self->pd->fd;
    pthread_mutex_unlock(&self->pd->lock);
    return PyLong_FromLong(fd);
}

static PyObject *
pdobject_get_closed(pdobject *self, void *unused)
{
    pthread_mutex_lock(&self->pd->lock);
    bool c = self->pd->closing;
    pthread_mutex_unlock(&self->pd->lock);
    return PyBool_FromLong(c);
}

static PyMethodDef pdobject_methods[] = {
    {"wait", (PyCFunction)pdobject_wait, METH_O,
     "wait($self, mode, /)\n--\n\n"
     "Park (a goroutine) or block (a thread) until the fd may be ready for "
     "mode 'r' or 'w'; then retry the call.  Raises net.ErrClosed after "
     "close(), TimeoutError('i/o timeout') past the deadline."},
    {"check", (PyCFunction)pdobject_check, METH_O,
     "check($self, mode, /)\n--\n\n"
     "Raise what wait(mode) would raise at once (closed, deadline "
     "passed); mode may be 'rw'."},
    {"set_deadline", (PyCFunction)(void (*)(void))pdobject_set_deadline,
     METH_FASTCALL,
     "set_deadline($self, t, mode, /)\n--\n\n"
     "Set the deadline of mode 'r', 'w' or 'rw' to the absolute time t "
     "(time.now()'s clock), or clear it with None; parked waits see it."},
    {"close", (PyCFunction)pdobject_close, METH_NOARGS,
     "close($self, /)\n--\n\n"
     "Unregister the fd (not closing it) and wake every wait with "
     "net.ErrClosed; idempotent."},
    {"read", (PyCFunction)pdobject_read, METH_O,
     "read($self, n, /)\n--\n\n"
     "recv at most n bytes, waiting while none are there; b'' at EOF."},
    {"read_into", (PyCFunction)pdobject_read_into, METH_O,
     "read_into($self, buf, /)\n--\n\n"
     "recv into buf, waiting while nothing is there; 0 at EOF."},
    {"write", (PyCFunction)pdobject_write, METH_O,
     "write($self, data, /)\n--\n\n"
     "send all of data, waiting while the send buffer is full; len(data)."},
    {"connect", (PyCFunction)(void (*)(void))pdobject_connect, METH_FASTCALL,
     "connect($self, family, address, /)\n--\n\n"
     "connect to a numeric address (socket module form), waiting while "
     "the connection is in progress."},
    {"accept", (PyCFunction)pdobject_accept, METH_NOARGS,
     "accept($self, /)\n--\n\n"
     "accept4 the next connection, waiting for one; its fd "
     "(non-blocking, close-on-exec)."},
    {"fileno", (PyCFunction)pdobject_fileno, METH_NOARGS,
     "fileno($self, /)\n--\n\nThe fd, or -1 once closed."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef pdobject_getset[] = {
    {"closed", (getter)pdobject_get_closed, NULL, "close() has run.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot pdobject_slots[] = {
    {Py_tp_doc, "PollDesc(fd)\n--\n\n"
                "The netpoller's record of one non-blocking fd (Go's "
                "pollDesc): goroutine.net's Conn and Listener wait on it."},
    {Py_tp_new, pdobject_new},
    {Py_tp_dealloc, pdobject_dealloc},
    {Py_tp_methods, pdobject_methods},
    {Py_tp_getset, pdobject_getset},
    {0, NULL},
};

static PyType_Spec pdobject_spec = {
    .name = "goroutine._core.PollDesc",
    .basicsize = sizeof(pdobject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = pdobject_slots,
};

/* socket(family, SOCK_STREAM) non-blocking and close-on-exec, with the
 * GIL held (see "the calls" above). */
static PyObject *
netpoll_socket(PyObject *module, PyObject *arg)
{
    int family;
    if (int_arg(arg, &family) < 0) {
        return NULL;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(fd);
}

/* close(fd) with the GIL held: close of a socket never blocks unless it
 * lingers, which net's sockets never set. */
static PyObject *
netpoll_close(PyObject *module, PyObject *arg)
{
    int fd;
    if (int_arg(arg, &fd) < 0) {
        return NULL;
    }
    if (close(fd) < 0 && errno != EINTR) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyMethodDef netpoll_methods[] = {
    {"_net_socket", netpoll_socket, METH_O,
     "_net_socket(family, /)\n--\n\n"
     "A non-blocking, close-on-exec stream socket's fd."},
    {"_net_close", netpoll_close, METH_O,
     "_net_close(fd, /)\n--\n\nclose(fd) without letting the GIL go."},
    {NULL, NULL, 0, NULL},
};

/* net.ErrClosed(OSError): immutable like every type of the package, so
 * made from a spec (state.c says why) with OSError's layout.  A heap type
 * over a static base must drop its instances' reference to it, which
 * OSError's dealloc does not: hence the two slots (a Python subclass's
 * subtype_dealloc leaves that reference to a heap base's dealloc). */
static void
errclosed_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    ((PyTypeObject *)PyExc_OSError)->tp_dealloc(self);
    Py_DECREF(tp);
}

static int
errclosed_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    return ((PyTypeObject *)PyExc_OSError)->tp_traverse(self, visit, arg);
}

static PyType_Slot errclosed_slots[] = {
    {Py_tp_doc, "ErrClosed: an operation on a closed Conn or Listener, or "
                "one that was waiting when it was closed (Go's "
                "net.ErrClosed: \"use of closed network connection\")."},
    {Py_tp_dealloc, errclosed_dealloc},
    {Py_tp_traverse, errclosed_traverse},
    {0, NULL},
};

static PyType_Spec errclosed_spec = {
    .name = "goroutine.net.ErrClosed",
    .basicsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = errclosed_slots,
};

/* Module init, staging (state.h): the type and net.ErrClosed.  The
 * scheduler learns about the poller here too (once per process). */
int
gr_netpoll_init(gr_globals_t *st)
{
    st->polldesc_type = (PyTypeObject *)PyType_FromSpec(&pdobject_spec);
    if (st->polldesc_type == NULL) {
        return -1;
    }
    st->ErrClosed = PyType_FromSpecWithBases(&errclosed_spec, PyExc_OSError);
    if (st->ErrClosed == NULL) {
        return -1;
    }
    gr_sched_set_netpoll(&netpoll_ops);
    return 0;
}

int
gr_netpoll_exec(PyObject *module)
{
    if (PyModule_AddObjectRef(module, "PollDesc",
                              (PyObject *)gr_globals.polldesc_type) < 0) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "ErrClosed",
                              gr_globals.ErrClosed) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, netpoll_methods);
}
