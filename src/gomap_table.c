/*
 * gomap_table.c: the hash table of goroutine.Map (see gomap.h for the
 * layout, growth, iteration and locking rules): buckets and their
 * overflow chains, Go's mapassign/mapdelete, hashGrow and evacuate,
 * mapiterinit/mapiternext (mapaccess, the lookup, is inline in gomap.h).  Nothing here reads or writes a
 * Python object (key and value pointers are only moved), so every
 * function runs with or without the GIL; all but htab_release and the
 * draining of a detached table need the map lock (which, while no
 * GIL-free section runs on the map, the GIL stands in for: map_lock).
 */
#include "gomap.h"

#include <sys/mman.h>

/* fastrand: a per-thread generator (Go's fastrand), for seeds, NaN hashes
 * and iteration starts.  Not for secrets. */
static _Thread_local uint64_t rand_state;
static uint64_t rand_counter;

uint64_t
gr_gmap_fastrand(void)
{
    if (rand_state == 0) {
        /* Seeded from the OS's random source (as Go seeds fastrand), so
         * map seeds (hash0) cannot be guessed from the time and an
         * address.  Only if getrandom fails (no entropy yet, ENOSYS) does
         * the clock stand in. */
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t c = __atomic_add_fetch(&rand_counter, 1,
                                            __ATOMIC_RELAXED);
            r = mix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30),
                    (uintptr_t)&rand_state ^ H1) ^ (c * H0);
        }
        rand_state = r | 1;
    }
    rand_state += H3;
    return mix(rand_state, rand_state ^ H4);
}

/* ------------------------------------------------------------------ */
/* Tables (GIL-free)                                                   */

/* overLoadFactor: would count entries in 2^B buckets exceed 6.5 a bucket? */
static inline bool
overLoadFactor(uint64_t count, uint8_t B)
{
    return count > BUCKETCNT &&
           count > LOADFACTOR_NUM * (bucketShift(B) / LOADFACTOR_DEN);
}

/* tooManyOverflowBuckets: Go's rule, "as many overflow buckets as
 * buckets", capped at 2^15 so that huge tables still repack. */
static inline bool
tooManyOverflowBuckets(uint64_t noverflow, uint8_t B)
{
    if (B > 15) {
        B = 15;
    }
    return noverflow >= ((uint64_t)1 << B);
}

/* The layout the header argues for: slots 32-byte aligned inside a
 * bucket of six whole lines. */
_Static_assert(sizeof(bmap) == 384 && offsetof(bmap, slots) % 32 == 0 &&
               sizeof(bslot) == 32, "bmap layout");

/* Tables of HUGE_MIN bytes or more are mapped on their own, aligned to
 * 2 MiB, with madvise(MADV_HUGEPAGE), so that the kernel backs them with
 * 2 MiB pages (transparent huge pages are "madvise" on many systems,
 * this one included: the allocator's own mmap of a big block gets 4 KiB
 * pages).  A get in a table of a million keys (2^18 buckets, 96 MiB)
 * otherwise misses the TLB on almost every probe: a page walk on top of
 * the cache miss.  Measured: see "Big tables and the TLB" in
 * docs/design.md.  Smaller tables take the allocator (a mapping of their
 * own would cost a system call per growth step for no TLB gain). */
#define HUGE_PAGE ((size_t)2 << 20)
#define HUGE_MIN HUGE_PAGE

/* A zeroed table of 2^B buckets, its buckets on 64-byte lines.  Calloc'd
 * and aligned up inside (rather than aligned_alloc + memset) so that a
 * big table gets the allocator's zero pages instead of being written
 * twice; from HUGE_MIN bytes, mapped on huge pages (above). */
static htab *
htab_new(uint8_t B)
{
    size_t size = sizeof(htab) + 63 + bucketShift(B) * sizeof(bmap);
    void *mem;
    size_t maplen = 0;
    if (size >= HUGE_MIN) {
        /* Map one huge page more than needed and unmap the ends, which
         * leaves a 2 MiB-aligned range: only an aligned 2 MiB range can
         * be one huge page.  Anonymous memory reads as zeros. */
        size_t len = (size + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
        uint8_t *m = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            return NULL;
        }
        uint8_t *a = gr_map_trim(m, len, HUGE_PAGE);
#ifdef MADV_HUGEPAGE
        /* Advice only: where THP is off, the table keeps 4 KiB pages. */
        (void)madvise(a, len, MADV_HUGEPAGE);
#endif
        mem = a;
        maplen = len;
    }
    else {
        mem = PyMem_RawCalloc(1, size);
        if (mem == NULL) {
            return NULL;
        }
    }
    htab *t = (htab *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
    t->mem = mem;
    t->maplen = maplen;
    t->refs = 1;
    t->B = B;
    return t;
}

/* Move the objects of every live slot of t out (into out[], which has room
 * for 2 per live slot, or DECREF'd on the spot when out is NULL, which
 * needs the GIL) and mark the slots empty.  Called on tables no hmap
 * references any more (clear, dealloc), so no lock is needed: iterators
 * holding t see the map's clearseq moved on and never read it again.
 * Returns the number of pointers stored in out. */
size_t
gr_htab_drain(htab *t, PyObject **out)
{
    size_t n = 0;
    for (uintptr_t bi = 0; bi < bucketShift(t->B); bi++) {
        for (bmap *b = &t->buckets[bi]; b != NULL; b = b->overflow) {
            for (int i = 0; i < BUCKETCNT; i++) {
                if (b->tophash[i] < minTopHash) {
                    continue;
                }
                PyObject *k = b->okeys[i], *v = b->slots[i].elem;
                b->okeys[i] = b->slots[i].elem = NULL;
                b->tophash[i] = emptyOne;
                gkey_release(&b->slots[i].key);
                if (out != NULL) {
                    out[n++] = k;
                    out[n++] = v;
                }
                else {
                    Py_DECREF(k);
                    Py_DECREF(v);
                }
            }
        }
    }
    return n;
}

/* Free a table nothing references: its keys and overflow buckets.  It can
 * hold no live slot (see htab_drain); one would be a leak of Python objects
 * we could not release here, so it is fatal. */
static void
htab_free(htab *t)
{
    for (uintptr_t bi = 0; bi < bucketShift(t->B); bi++) {
        bmap *b = &t->buckets[bi];
        while (b != NULL) {
            for (int i = 0; i < BUCKETCNT; i++) {
                uint8_t top = b->tophash[i];
                if (top >= minTopHash) {
                    Py_FatalError("goroutine: map table freed with live entries");
                }
                if (top == evacuatedX || top == evacuatedY) {
                    gkey_release(&b->slots[i].key);
                }
            }
            bmap *next = b->overflow;
            if (b != &t->buckets[bi]) {
                free(b);        /* aligned_alloc'd by newoverflow */
            }
            b = next;
        }
    }
    if (t->maplen != 0) {
        munmap(t->mem, t->maplen);
    }
    else {
        PyMem_RawFree(t->mem);
    }
}

static inline void
htab_incref(htab *t)
{
    __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
}

/* Drop a reference: safe anywhere, with or without the lock or the GIL. */
void
gr_htab_release(htab *t)
{
    if (t != NULL && __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        htab_free(t);
    }
}

/* ------------------------------------------------------------------ */
/* The map: Go's algorithms (lock held, GIL-free)                      */

static inline uintptr_t
oldbucketmask(const hmap *h)
{
    return noldbuckets(h) - 1;
}

static inline uint64_t
keyhash(const hmap *h, const ckey *k)
{
    if (ckey_nan(k)) {
        return gr_gmap_fastrand();
    }
    return ckey_hash(k, h->hash0);
}

/* newoverflow: chain an empty overflow bucket after b.  NULL when out of
 * memory. */
static bmap *
newoverflow(hmap *h, bmap *b)
{
    bmap *ovf = aligned_alloc(64, sizeof(bmap));
    if (ovf != NULL) {
        memset(ovf, 0, sizeof(bmap));
        b->overflow = ovf;
        h->noverflow++;
    }
    return ovf;
}

static void
advanceEvacuationMark(hmap *h, uintptr_t newbit)
{
    h->nevacuate++;
    /* Bound the scan so a write never does O(2^B) work (Go: 1024). */
    uintptr_t stop = h->nevacuate + 1024;
    if (stop > newbit) {
        stop = newbit;
    }
    while (h->nevacuate != stop &&
           evacuated(&h->oldbuckets->buckets[h->nevacuate])) {
        h->nevacuate++;
    }
    if (h->nevacuate == newbit) {
        /* Growth done.  Iterators may still hold the old table; its
         * evacuated slots keep their keys for them. */
        htab *old = h->oldbuckets;
        h->oldbuckets = NULL;
        h->flags &= ~sameSizeGrow;
        gr_htab_release(old);
    }
}

/* evacuate: move old bucket oldbucket (and its chain) into the new table.
 * Out of memory here would leave the map half moved: fatal, like Go's
 * throw. */
static void
evacuate(hmap *h, uintptr_t oldbucket)
{
    bmap *b = &h->oldbuckets->buckets[oldbucket];
    uintptr_t newbit = noldbuckets(h);
    if (!evacuated(b)) {
        bmap *dst[2];
        int dsti[2] = {0, 0};
        dst[0] = &h->buckets->buckets[oldbucket];
        dst[1] = (h->flags & sameSizeGrow)
                 ? NULL : &h->buckets->buckets[oldbucket + newbit];
        for (; b != NULL; b = b->overflow) {
            for (int i = 0; i < BUCKETCNT; i++) {
                uint8_t top = b->tophash[i];
                if (isEmpty(top)) {
                    b->tophash[i] = evacuatedEmpty;
                    continue;
                }
                if (top < minTopHash) {
                    Py_FatalError("goroutine: bad map state");
                }
                int useY = 0;
                gkey *k = &b->slots[i].key;
                bool nan = (k->len & GKEY_NAN) != 0;
                if (!(h->flags & sameSizeGrow)) {
                    if (nan) {
                        /* No stable hash: the tophash's low bit decides,
                         * and a fresh random tophash spreads NaNs over the
                         * next growth (Go's rule; mapiternext mirrors it). */
                        useY = top & 1;
                        top = tophash(gr_gmap_fastrand());
                    }
                    else {
                        useY = (gkey_hash(k, h->hash0) & newbit) != 0;
                    }
                }
                b->tophash[i] = evacuatedX + useY;
                if (dsti[useY] == BUCKETCNT) {
                    bmap *ovf = newoverflow(h, dst[useY]);
                    if (ovf == NULL) {
                        Py_FatalError("goroutine: out of memory evacuating "
                                      "a map bucket");
                    }
                    dst[useY] = ovf;
                    dsti[useY] = 0;
                }
                /* The new table's bucket starts empty and only this call
                 * fills it (new inserts for it wait for this evacuation),
                 * so appending at dsti keeps it packed. */
                bmap *d = dst[useY];
                int di = dsti[useY]++;
                d->tophash[di] = top;
                gkey_share(&d->slots[di].key, k);
                d->okeys[di] = b->okeys[i];
                d->slots[di].elem = b->slots[i].elem;
                if (!nan) {
                    /* A NaN entry's pointers stay as borrowed copies for
                     * iterators (valid until clear(), see the header). */
                    b->okeys[i] = b->slots[i].elem = NULL;
                }
            }
        }
    }
    if (oldbucket == h->nevacuate) {
        advanceEvacuationMark(h, newbit);
    }
}

/* growWork: evacuate the old bucket a write to `bucket` needs, and one more
 * to make progress. */
static void
growWork(hmap *h, uintptr_t bucket)
{
    evacuate(h, bucket & oldbucketmask(h));
    if (growing(h)) {
        evacuate(h, h->nevacuate);
    }
}

/* hashGrow: start a growth (double, or same size when not over the load
 * factor: too many overflow buckets).  Returns -1 when out of memory (the
 * map is unchanged). */
static int
hashGrow(hmap *h)
{
    uint8_t bigger = 1;
    if (!overLoadFactor((uint64_t)h->count + 1, h->B)) {
        bigger = 0;
    }
    htab *t = htab_new(h->B + bigger);
    if (t == NULL) {
        return -1;
    }
    if (!bigger) {
        h->flags |= sameSizeGrow;
    }
    h->oldbuckets = h->buckets;
    h->buckets = t;
    h->B += bigger;
    h->nevacuate = 0;
    h->noverflow = 0;
    return 0;
}


/* mapassign: find k's slot, or make one.  Returns 0 with an existing slot,
 * 1 with a new slot (key stored, okeys/elems NULL: the caller fills them
 * and the count already includes it), -1 when out of memory (map
 * unchanged).  May start a growth; always does growWork. */
int
gr_mapassign(hmap *h, ckey *k, slotref *out)
{
    if (h->buckets == NULL) {
        h->buckets = htab_new(h->B);
        if (h->buckets == NULL) {
            return -1;
        }
    }
    uint64_t hash = keyhash(h, k);
    uint8_t top = tophash(hash);
again:;
    uintptr_t bucket = hash & bucketMask(h->B);
    if (growing(h)) {
        growWork(h, bucket);
    }
    bmap *b = &h->buckets->buckets[bucket];
    bmap *insb = NULL;
    int insi = 0;
    for (;;) {
        uint64_t w = tophashes(b);
        int i = ckey_nan(k) ? -1 : bucket_find(b, w, top, k);
        if (i >= 0) {
            out->b = b;
            out->i = i;
            return 0;
        }
        if (insb == NULL) {
            /* The first empty slot: a byte below 2 (emptyRest or
             * emptyOne) is one whose bits 1-7 are zero. */
            uint64_t m = zerobytes(w & ~BYTES_01);
            if (m != 0) {
                insb = b;
                insi = flagged_slot(m);
            }
        }
        if (zerobytes(w) != 0 || b->overflow == NULL) {
            break;              /* an emptyRest, or the chain's end */
        }
        b = b->overflow;
    }
    /* Not found.  Growing invalidates everything found so far: start
     * over (Go: "Growing the table invalidates everything"). */
    if (!growing(h) &&
        (overLoadFactor((uint64_t)h->count + 1, h->B) ||
         tooManyOverflowBuckets(h->noverflow, h->B))) {
        if (hashGrow(h) < 0) {
            return -1;
        }
        goto again;
    }
    bool fresh_ovf = false;
    if (insb == NULL) {
        insb = newoverflow(h, b);
        if (insb == NULL) {
            return -1;
        }
        insi = 0;
        fresh_ovf = true;
    }
    if (gkey_store(&insb->slots[insi].key, k) < 0) {
        /* An empty overflow bucket left chained is harmless. */
        (void)fresh_ovf;
        return -1;
    }
    insb->tophash[insi] = top;
    insb->okeys[insi] = NULL;
    insb->slots[insi].elem = NULL;
    h->count++;
    out->b = insb;
    out->i = insi;
    return 1;
}

/* mapdelete: remove k, when present and (expect == NULL or its value is
 * expect).  Returns 1 and hands over the key object and value (owned) to
 * the caller, who releases them after unlocking; 0 when absent; 2 when
 * present with another value (nothing changed). */
int
gr_mapdelete(hmap *h, const ckey *k, PyObject *expect,
          PyObject **okey, PyObject **elem)
{
    if (h->count == 0 || ckey_nan(k)) {
        return 0;
    }
    uint64_t hash = ckey_hash(k, h->hash0);
    uintptr_t bucket = hash & bucketMask(h->B);
    if (growing(h)) {
        growWork(h, bucket);
    }
    bmap *bOrig = &h->buckets->buckets[bucket];
    slotref s;
    if (!chain_find(bOrig, tophash(hash), k, &s)) {
        return 0;
    }
    bmap *b = s.b;
    int i = s.i;
    if (expect != NULL && b->slots[i].elem != expect) {
        return 2;
    }
    *okey = b->okeys[i];
    *elem = b->slots[i].elem;
    b->okeys[i] = b->slots[i].elem = NULL;
    gkey_release(&b->slots[i].key);
    b->tophash[i] = emptyOne;
    /* If the bucket now ends in a run of emptyOne states, turn them into
     * emptyRest so probes stop early (Go's loop). */
    if (i == BUCKETCNT - 1) {
        if (b->overflow != NULL && b->overflow->tophash[0] != emptyRest) {
            goto notLast;
        }
    }
    else if (b->tophash[i + 1] != emptyRest) {
        goto notLast;
    }
    for (;;) {
        b->tophash[i] = emptyRest;
        if (i == 0) {
            if (b == bOrig) {
                break;
            }
            bmap *c = b;
            for (b = bOrig; b->overflow != c; b = b->overflow) {
            }
            i = BUCKETCNT - 1;
        }
        else {
            i--;
        }
        if (b->tophash[i] != emptyOne) {
            break;
        }
    }
notLast:
    h->count--;
    if (h->count == 0) {
        /* Go: renew the seed so an attacker cannot keep a colliding key
         * set across an emptied map. */
        h->hash0 = gr_gmap_fastrand();
    }
    return 1;
}

/* mapiterinit: start an iteration at a random bucket and offset. */
void
gr_mapiterinit(hmap *h, hiter *it)
{
    memset(it, 0, sizeof *it);
    it->checkBucket = NOCHECK;
    if (h->count == 0 || h->buckets == NULL) {
        it->done = true;
        return;
    }
    it->tab = h->buckets;
    htab_incref(it->tab);
    it->B = h->B;
    it->clearseq = h->clearseq;
    uint64_t r = gr_gmap_fastrand();
    it->startBucket = r & bucketMask(h->B);
    it->offset = (uint8_t)((r >> h->B) & (BUCKETCNT - 1));
    it->bucket = it->startBucket;
}

/* Drop an iteration's table references. */
void
gr_hiter_finish(hiter *it)
{
    gr_htab_release(it->btab);
    gr_htab_release(it->tab);
    it->btab = it->tab = NULL;
    it->bptr = NULL;
    it->done = true;
}

/* mapiternext: the next entry, as borrowed key object and value (valid
 * while the lock is held).  Returns false at the end; then the iteration
 * holds no table any more, so the caller may finish it without the lock. */
bool
gr_mapiternext(hmap *h, hiter *it, PyObject **okey, PyObject **elem)
{
    if (it->done) {
        return false;
    }
    if (it->clearseq != h->clearseq) {
        gr_hiter_finish(it);
        return false;
    }
    uintptr_t bucket = it->bucket;
    bmap *b = it->bptr;
    int i = it->i;
    uintptr_t checkBucket = it->checkBucket;

next:
    if (b == NULL) {
        if (bucket == it->startBucket && it->wrapped) {
            gr_hiter_finish(it);
            return false;
        }
        gr_htab_release(it->btab);
        it->btab = NULL;
        if (growing(h) && it->B == h->B) {
            /* Started mid-growth, and that growth is still going: read
             * the old bucket unless it has already moved, keeping only
             * the entries that will land in this bucket. */
            uintptr_t oldbucket = bucket & oldbucketmask(h);
            b = &h->oldbuckets->buckets[oldbucket];
            if (!evacuated(b)) {
                checkBucket = bucket;
                it->checkSame = (h->flags & sameSizeGrow) != 0;
                /* bptr may outlive this growth across calls. */
                it->btab = h->oldbuckets;
                htab_incref(it->btab);
            }
            else {
                b = &it->tab->buckets[bucket];
                checkBucket = NOCHECK;
            }
        }
        else {
            b = &it->tab->buckets[bucket];
            checkBucket = NOCHECK;
        }
        bucket++;
        if (bucket == bucketShift(it->B)) {
            bucket = 0;
            it->wrapped = true;
        }
        i = 0;
    }
    for (; i < BUCKETCNT; i++) {
        int offi = (i + it->offset) & (BUCKETCNT - 1);
        uint8_t top = b->tophash[offi];
        if (isEmpty(top) || top == evacuatedEmpty) {
            continue;
        }
        gkey *k = &b->slots[offi].key;
        bool nan = (k->len & GKEY_NAN) != 0;
        /* Go tests the live sameSizeGrow flag here; we remember the flag
         * of the growth this old bucket belongs to, which stays right
         * when that growth ends and another starts between two calls. */
        if (checkBucket != NOCHECK && !it->checkSame) {
            if (!nan) {
                uint64_t hash = gkey_hash(k, h->hash0);
                if ((hash & bucketMask(it->B)) != checkBucket) {
                    continue;
                }
            }
            else if ((checkBucket >> (it->B - 1)) != (uintptr_t)(top & 1)) {
                continue;
            }
        }
        if ((top != evacuatedX && top != evacuatedY) || nan) {
            /* The golden data (or a NaN entry's borrowed copy). */
            *okey = b->okeys[offi];
            *elem = b->slots[offi].elem;
        }
        else {
            /* The table grew since we started: the entry lives elsewhere
             * now, maybe updated, maybe deleted. */
            ckey c;
            ckey_of(k, &c);
            slotref s;
            if (!mapaccess(h, &c, &s)) {
                continue;
            }
            *okey = s.b->okeys[s.i];
            *elem = s.b->slots[s.i].elem;
        }
        it->bucket = bucket;
        it->bptr = b;
        it->i = (uint8_t)(i + 1);
        it->checkBucket = checkBucket;
        return true;
    }
    b = b->overflow;
    i = 0;
    goto next;
}

/* Detach both tables and reset h to empty; the caller drains and
 * releases them (see map_clear). */
void
gr_hmap_detach(hmap *h, htab **cur, htab **old)
{
    *cur = h->buckets;
    *old = h->oldbuckets;
    h->buckets = h->oldbuckets = NULL;
    h->count = 0;
    h->B = 0;
    h->flags = 0;
    h->noverflow = 0;
    h->nevacuate = 0;
    h->hash0 = gr_gmap_fastrand();
    h->clearseq++;
}

/* The smallest B that holds hint entries without growing (Go's makemap). */
static uint8_t
hintB(Py_ssize_t hint)
{
    uint8_t B = 0;
    while (B < 60 && overLoadFactor((uint64_t)hint, B)) {
        B++;
    }
    return B;
}

/* Pre-size an empty, non-growing map for hint entries (update() of a big
 * input into an empty map then never evacuates). */
void
gr_hmap_reserve(hmap *h, Py_ssize_t hint)
{
    uint8_t B = hintB(hint);
    if (h->count != 0 || growing(h) || B <= h->B) {
        return;
    }
    gr_htab_release(h->buckets);
    h->buckets = NULL;
    h->B = B;
    h->noverflow = 0;
}
