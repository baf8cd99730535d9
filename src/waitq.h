/*
 * waitq.h: the wait queue (gr_waitq) and the wake list (gr_wakelist) of
 * waiter.c, inline: they are on every channel, select and sync operation
 * that meets a waiter, where a call into waiter.c for each step cost 3%
 * more instructions per unbuffered round trip (callgrind; design.md,
 * "Blocking and waking").  Included by core.h only.
 *
 * A gr_waitq is a FIFO of sudogs guarded by its owner's lock (hchan.lock,
 * a sync object's mu): every function here runs with it held, except
 * gr_wakelist_wake, which runs after it is released.  The links are
 * stored with relaxed atomic stores (plain moves on x86-64 and aarch64)
 * because select's first pass reads a channel queue's head without the
 * lock (chan.c, gr_chan_peek); only that read is unlocked.
 *   sg->q != NULL  iff  sg is linked on *sg->q.
 * A sudog on a wake list is on no queue: its `next` is the list's link,
 * and its waiter is claimed, so nobody else wakes it.  Linking through
 * the sudog itself needs no memory, so a waiter taken off its queue can
 * never be lost to a failed allocation.
 */
#ifndef GR_WAITQ_H
#define GR_WAITQ_H

/* Link sg at the tail, or at the head (a Mutex waiter that lost to a
 * newcomer keeps its place). */
static inline void
gr_waitq_push(gr_waitq *q, gr_sudog *sg, bool front)
{
    sg->q = q;
    sg->prev = front ? NULL : q->tail;
    sg->next = front ? q->head : NULL;
    /* Whatever pointed across the gap (a neighbour, or the queue's head
     * or tail) now points at sg. */
    GR_STORE_RELAXED(sg->prev != NULL ? &sg->prev->next : &q->head, sg);
    *(sg->next != NULL ? &sg->next->prev : &q->tail) = sg;
}

/* Unlink sg from its queue; a no-op if it is on none. */
static inline void
gr_waitq_remove(gr_sudog *sg)
{
    gr_waitq *q = sg->q;
    if (q == NULL) {
        return;
    }
    GR_STORE_RELAXED(sg->prev != NULL ? &sg->prev->next : &q->head,
                     sg->next);
    *(sg->next != NULL ? &sg->next->prev : &q->tail) = sg->prev;
    sg->next = sg->prev = NULL;
    sg->q = NULL;
}

/* The first sudog whose waiter is still open, left on the queue; the
 * stale ones before it (a select that fired elsewhere, a cancelled
 * thread) are unlinked on the way. */
static inline gr_sudog *
gr_waitq_first(gr_waitq *q)
{
    while (q->head != NULL) {
        gr_sudog *sg = q->head;
        if (atomic_load(&sg->w->claimed) == 0) {
            return sg;
        }
        gr_waitq_remove(sg);
    }
    return NULL;
}

/* Unlink sg and claim its waiter for completing it through sg.  False
 * if the claim lost (a cancel, another select case, a ghost after fork):
 * sg is then just dropped. */
static inline bool
gr_waitq_take(gr_sudog *sg)
{
    gr_waitq_remove(sg);
    if (!gr_waiter_claim(sg->w)) {
        return false;
    }
    sg->w->fired = sg;
    return true;
}

/* Take the first sudog whose claim wins, or NULL (Go's dequeue). */
static inline gr_sudog *
gr_waitq_dequeue(gr_waitq *q)
{
    gr_sudog *sg;
    while ((sg = gr_waitq_first(q)) != NULL) {
        if (gr_waitq_take(sg)) {
            return sg;
        }
    }
    return NULL;
}

/* Add a taken sudog (FIFO: they are woken in the order taken). */
static inline void
gr_wakelist_add(gr_wakelist *wl, gr_sudog *sg)
{
    sg->next = NULL;
    *(wl->tail != NULL ? &wl->tail->next : &wl->head) = sg;
    wl->tail = sg;
}

/* Wake them all.  No runtime lock held. */
static inline void
gr_wakelist_wake(gr_wakelist *wl)
{
    gr_sudog *sg = wl->head;
    wl->head = wl->tail = NULL;
    while (sg != NULL) {
        gr_sudog *next = sg->next;  /* sg may be gone once woken */
        gr_waiter_wake(sg->w);
        sg = next;
    }
}

#endif /* GR_WAITQ_H */
