/*
 * gomap_type.c: goroutine.Map as a Python type (see gomap.h for the
 * design): the map lock and how it is taken around the GIL, the single
 * operations, update() with its GIL-free insert batches, snapshots, clear,
 * the views and iterators, GC support and the type specs.
 */
#include "gomap.h"

/* An iterator object: keys, values or items of one map. */
enum { ITER_KEYS, ITER_VALUES, ITER_ITEMS };

typedef struct {
    PyObject_HEAD
    hmap *map;                /* strong; NULL when exhausted */
    int kind;                 /* ITER_* */
    hiter it;                 /* guarded by map->lock */
} mapiterobject;

/* A keys/values/items view. */
typedef struct {
    PyObject_HEAD
    hmap *map;                /* strong */
} mapviewobject;

/* ------------------------------------------------------------------ */
/* Locking (GIL held on entry and exit)                                */

/* The map lock is a word, taken free with one CAS and released with one
 * exchange: Drepper's second mutex ("Futexes Are Tricky"), with a
 * condition variable in place of the futex so that it builds everywhere.
 * 2 means someone may sleep on waitcv, so the releaser signals.  A pthread
 * mutex cost two library calls per operation (trylock, unlock), a few
 * percent of a get or set; the word costs two inlined atomic
 * instructions, and only while a GIL-free bulk section runs (map_lock's
 * single-owner fast path).  The lock is contended only by GIL-free bulk
 * sections and by a holder waiting for the GIL, so the sleeping side is
 * rare. */
static inline bool
lock_try(hmap *h)
{
    int free = 0;
    return __atomic_compare_exchange_n(&h->lock, &free, 1, false,
                                       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

/* Take the lock, sleeping while it is held.  Called without the GIL. */
static void
lock_acquire(hmap *h)
{
    if (lock_try(h)) {
        return;
    }
    pthread_mutex_lock(&h->waitmu);
    /* Whoever holds it now will signal: we mark it 2 before sleeping, under
     * waitmu, which the releaser takes before signalling.  Taking it this
     * way leaves it marked 2 even when nobody else waits: only a needless
     * signal at release. */
    while (__atomic_exchange_n(&h->lock, 2, __ATOMIC_ACQUIRE) != 0) {
        pthread_cond_wait(&h->waitcv, &h->waitmu);
    }
    pthread_mutex_unlock(&h->waitmu);
}

/* Release the lock word; with or without the GIL. */
static inline void
lock_release(hmap *h)
{
    if (__atomic_exchange_n(&h->lock, 0, __ATOMIC_RELEASE) == 2) {
        pthread_mutex_lock(&h->waitmu);
        pthread_cond_signal(&h->waitcv);
        pthread_mutex_unlock(&h->waitmu);
    }
}

/* Enter the map's critical section, GIL held (it stays held until
 * map_unlock).
 *
 * The single-owner fast path: while no GIL-free section runs on the map
 * (bulk == 0, read with the GIL, which is the only way bulk changes),
 * every reader and writer of the map's fields holds the GIL for its whole
 * critical section, so the GIL alone excludes them all and the lock word
 * is not touched.  A thread that took the word in the slow path and now
 * waits for the GIL does not count: it touches nothing before it has the
 * GIL.  The two atomic instructions the word costs (a CAS and an
 * exchange, 15-18 ns together on this machine's EPYC, as much as a whole
 * dict get) are thus paid only while an update()/copy() batch runs
 * without the GIL.  Happens-before, as TSan checks it: a bulk section's
 * writes precede its lock_release and its bulk-- (done after retaking the
 * GIL); a fast-path section follows that GIL hand-off.
 *
 * Otherwise one try; when contended, wait without the GIL (the holder may
 * be a GIL-free bulk section, or be waiting for the GIL itself).  If the
 * bulk sections ended while we waited, the word is given back at once, so
 * that "a GIL holder inside a section holds the word iff bulk > 0" holds
 * at map_unlock, which decides by bulk alone. */
static inline void
map_lock(hmap *h)
{
    if (h->bulk == 0) {
        return;
    }
    if (!lock_try(h)) {
        Py_BEGIN_ALLOW_THREADS
        lock_acquire(h);
        Py_END_ALLOW_THREADS
        if (h->bulk == 0) {
            lock_release(h);
        }
    }
}

/* Leave the critical section map_lock entered (GIL held throughout, so
 * bulk has not changed since). */
static inline void
map_unlock(hmap *h)
{
    if (h->bulk != 0) {
        lock_release(h);
    }
}

/* ------------------------------------------------------------------ */
/* Single operations (GIL held; each takes and drops the lock once)    */

/* Look k up; returns a new reference to its value, or NULL (no error set)
 * when absent.  *err is set when k could not be encoded.  Forced inline:
 * as a call of its own it cost m[k] a frame (callee-saved registers and
 * the ckey spilled to the stack around it); see docs/design.md,
 * "Instructions per get". */
static inline __attribute__((always_inline)) PyObject *
map_lookup(hmap *h, PyObject *k, int *err)
{
    kenc e;
    ckey c;
    *err = 0;
    if (encode_key(&e, k, &c) < 0) {
        *err = -1;
        return NULL;
    }
    PyObject *v = NULL;
    slotref s;
    map_lock(h);
    if (mapaccess(h, &c, &s)) {
        v = s.b->slots[s.i].elem;
        Py_INCREF(v);
    }
    map_unlock(h);
    kenc_free(&e);
    return v;
}

/* Store v under k.  Modes: */
enum {
    STORE_ALWAYS,       /* m[k] = v; *prev gets the replaced value */
    STORE_IF_ABSENT,    /* load_or_store: *prev gets the present value */
};

/* Returns 1 when k was inserted, 0 when it was present (then *prev is a new
 * reference: the value replaced, or the value kept), -1 on error.  Forced
 * inline, as map_lookup is. */
static inline __attribute__((always_inline)) int
map_store(hmap *h, PyObject *k, PyObject *v, int mode, PyObject **prev)
{
    kenc e;
    ckey c;
    *prev = NULL;
    if (encode_key(&e, k, &c) < 0) {
        return -1;
    }
    slotref s;
    map_lock(h);
    /* An existing key while no growth runs: the inline lookup finds its
     * slot (the common m[k] = v of a warm map).  During a growth every
     * write goes through mapassign, whose growWork moves it along. */
    int r = !growing(h) && mapaccess(h, &c, &s) ? 0
            : gr_mapassign(h, &c, &s);
    if (r == 1) {
        Py_INCREF(k);
        Py_INCREF(v);
        s.b->okeys[s.i] = k;
        s.b->slots[s.i].elem = v;
    }
    else if (r == 0) {
        if (mode == STORE_ALWAYS) {
            /* The replaced value is released by the caller, unlocked. */
            *prev = s.b->slots[s.i].elem;
            Py_INCREF(v);
            s.b->slots[s.i].elem = v;
        }
        else {
            *prev = s.b->slots[s.i].elem;
            Py_INCREF(*prev);
        }
    }
    map_unlock(h);
    kenc_free(&e);
    if (r < 0) {
        PyErr_NoMemory();
    }
    return r;
}

/* Delete k (if expect is not NULL, only while its value is expect).
 * Returns mapdelete's result, or -1 on error; on 1, *okey and *elem are
 * the removed references (the caller releases them). */
static int
map_delete(hmap *h, PyObject *k, PyObject *expect,
           PyObject **okey, PyObject **elem)
{
    kenc e;
    ckey c;
    if (encode_key(&e, k, &c) < 0) {
        return -1;
    }
    map_lock(h);
    int r = gr_mapdelete(h, &c, expect, okey, elem);
    map_unlock(h);
    kenc_free(&e);
    return r;
}

/* ------------------------------------------------------------------ */
/* update(): encode with the GIL, insert in batches without it          */

typedef struct {
    gkey key;                 /* a short key's slot image; a longer
                                 one's length | GKEY_NAN */
    keybuf *kb;               /* owned bytes when longer, else NULL */
    PyObject *okey;           /* owned; NULL once stored in the map */
    PyObject *val;            /* owned: the new value, or after insertion
                                 the value it replaced (or NULL) */
} upentry;

typedef struct {
    upentry *e;               /* PyMem_RawMalloc'd, UPDATE_BATCH entries */
    size_t n;                 /* entries filled */
    Py_ssize_t hint;          /* expected total, for pre-sizing; then 0 */
} upbatch;

/* Start loading the tophash line of the bucket u's key goes to.  A batch
 * knows its keys in advance, and a big map's random bucket is a cache
 * miss (DRAM, for a table of tens of MB): without this, update() of a
 * million pairs spent 80% of its insertion time waiting on that miss, one
 * at a time.  Only a hint: when the table grows meanwhile, mapassign goes
 * elsewhere. */
static void
prefetch_bucket(const hmap *h, const upentry *u)
{
    if (h->buckets == NULL || growing(h) || h->B < PREFETCH_MIN_B) {
        return;
    }
    ckey c;
    ckey_load(&c, &u->key, u->kb);
    if (ckey_nan(&c)) {
        return;
    }
    __builtin_prefetch(
        &h->buckets->buckets[ckey_hash(&c, h->hash0) & bucketMask(h->B)], 1);
}

/* Insert a batch.  Lock held, GIL possibly not.  Returns -1 when out of
 * memory (entries from the failing one on stay with the batch). */
static int
upbatch_insert(hmap *h, upbatch *ub)
{
    if (ub->hint > 0) {
        gr_hmap_reserve(h, ub->hint);
        ub->hint = 0;
    }
    for (size_t j = 0; j < ub->n; j++) {
        if (j + PREFETCH_AHEAD < ub->n) {
            prefetch_bucket(h, &ub->e[j + PREFETCH_AHEAD]);
        }
        upentry *u = &ub->e[j];
        ckey c;
        ckey_load(&c, &u->key, u->kb);
        c.kb = u->kb;
        slotref s;
        int r = gr_mapassign(h, &c, &s);
        if (r < 0) {
            return -1;
        }
        u->kb = c.kb;       /* NULL when the map took it */
        if (r == 1) {
            s.b->okeys[s.i] = u->okey;
            s.b->slots[s.i].elem = u->val;
            u->okey = NULL;
            u->val = NULL;
        }
        else {
            /* dict keeps the first key object; the new one is dropped */
            PyObject *old = s.b->slots[s.i].elem;
            s.b->slots[s.i].elem = u->val;
            u->val = old;
        }
    }
    return 0;
}

/* Insert the batch and release what it holds afterwards.  GIL held on
 * entry and exit; released around the insertion of a big batch. */
static int
upbatch_flush(hmap *h, upbatch *ub)
{
    if (ub->n == 0) {
        return 0;
    }
    int r;
    if (ub->n >= BULK_MIN) {
        h->bulk++;
        Py_BEGIN_ALLOW_THREADS
        lock_acquire(h);
        r = upbatch_insert(h, ub);
        lock_release(h);
        Py_END_ALLOW_THREADS
        h->bulk--;
    }
    else {
        map_lock(h);
        r = upbatch_insert(h, ub);
        map_unlock(h);
    }
    for (size_t j = 0; j < ub->n; j++) {
        upentry *u = &ub->e[j];
        if (u->kb != NULL) {
            PyMem_RawFree(u->kb);
        }
        Py_XDECREF(u->okey);
        Py_XDECREF(u->val);
    }
    ub->n = 0;
    if (r < 0) {
        PyErr_NoMemory();
    }
    return r;
}

/* Add (k, v) to the batch (new references taken), flushing when full. */
static int
upbatch_add(hmap *h, upbatch *ub, PyObject *k, PyObject *v)
{
    kenc e;
    ckey c;
    if (encode_key(&e, k, &c) < 0) {
        return -1;
    }
    upentry *u = &ub->e[ub->n];
    u->kb = NULL;
    uint32_t len = ckey_len(&c);
    if (len <= GKEY_INLINE) {
        ckey_image(&c, &u->key);
    }
    else {
        u->kb = keybuf_new(c.p, len, ckey_strhashed(&c) ? c.xhash : 0);
        if (u->kb == NULL) {
            kenc_free(&e);
            PyErr_NoMemory();
            return -1;
        }
        u->key.len = c.len;
    }
    kenc_free(&e);
    Py_INCREF(k);
    Py_INCREF(v);
    u->okey = k;
    u->val = v;
    ub->n++;
    if (ub->n == UPDATE_BATCH) {
        return upbatch_flush(h, ub);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Snapshots (GIL held): entries as new references, taken under the lock */

/* Every entry of h as 2*n new references (key object, value) in a
 * PyMem_Raw array.  The lock is held while copying pointers only. */
static PyObject **
map_snapshot(hmap *h, Py_ssize_t *n)
{
    PyObject **arr = NULL;
    for (;;) {
        map_lock(h);
        Py_ssize_t want = h->count;
        if (arr == NULL || *n < want) {
            map_unlock(h);
            PyMem_RawFree(arr);
            arr = PyMem_RawMalloc(sizeof(PyObject *) * 2 * (size_t)(want + 1));
            if (arr == NULL) {
                PyErr_NoMemory();
                return NULL;
            }
            *n = want + 1;
            continue;       /* count may have moved: look again */
        }
        hiter it;
        gr_mapiterinit(h, &it);
        Py_ssize_t got = 0;
        PyObject *k, *v;
        while (got < *n && gr_mapiternext(h, &it, &k, &v)) {
            Py_INCREF(k);
            Py_INCREF(v);
            arr[2 * got] = k;
            arr[2 * got + 1] = v;
            got++;
        }
        map_unlock(h);
        gr_hiter_finish(&it);
        *n = got;
        return arr;
    }
}

static void
snapshot_free(PyObject **arr, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < 2 * n; i++) {
        Py_DECREF(arr[i]);
    }
    PyMem_RawFree(arr);
}

static PyObject *
map_items_list(hmap *h)
{
    Py_ssize_t n;
    PyObject **arr = map_snapshot(h, &n);
    if (arr == NULL) {
        return NULL;
    }
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
        PyObject *t = PyTuple_Pack(2, arr[2 * i], arr[2 * i + 1]);
        if (t == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, t);
    }
    snapshot_free(arr, n);
    return list;
}

/* ------------------------------------------------------------------ */
/* update() input                                                      */

/* Feed arg (a dict, a Map, a mapping with keys(), or an iterable of
 * pairs) to the batch, dict.update's rules.  The input is snapshotted
 * first: a batch flush releases the GIL, and the input must not change
 * under the iteration. */
static int
update_from(hmap *h, upbatch *ub, PyObject *arg)
{
    PyObject *items;
    if (PyDict_Check(arg)) {
        items = PyDict_Items(arg);
    }
    else if (PyObject_TypeCheck(arg, gr_globals.map.Map)) {
        items = map_items_list((hmap *)arg);
    }
    else {
        PyObject *keys = NULL;
        if (PyObject_HasAttrString(arg, "keys")) {
            keys = PyObject_CallMethod(arg, "keys", NULL);
            if (keys == NULL) {
                return -1;
            }
            PyObject *klist = PySequence_List(keys);
            Py_DECREF(keys);
            if (klist == NULL) {
                return -1;
            }
            items = PyList_New(PyList_GET_SIZE(klist));
            for (Py_ssize_t i = 0; items && i < PyList_GET_SIZE(klist); i++) {
                PyObject *k = PyList_GET_ITEM(klist, i);
                PyObject *v = PyObject_GetItem(arg, k);
                PyObject *t = v ? PyTuple_Pack(2, k, v) : NULL;
                Py_XDECREF(v);
                if (t == NULL) {
                    Py_CLEAR(items);
                    break;
                }
                PyList_SET_ITEM(items, i, t);
            }
            Py_DECREF(klist);
        }
        else {
            items = PySequence_List(arg);
        }
    }
    if (items == NULL) {
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    /* count under the lock: a GIL-free update() of another thread may be
     * inserting right now (TSan reported the unlocked read). */
    map_lock(h);
    bool empty = h->count == 0;
    map_unlock(h);
    if (empty) {
        ub->hint = n;
    }
    int r = 0;
    for (Py_ssize_t i = 0; i < n && r == 0; i++) {
        PyObject *pair = PySequence_Fast(PyList_GET_ITEM(items, i), "");
        if (pair == NULL) {
            PyErr_Format(PyExc_TypeError, "cannot convert dictionary update "
                         "sequence element #%zd to a sequence", i);
            r = -1;
            break;
        }
        if (PySequence_Fast_GET_SIZE(pair) != 2) {
            PyErr_Format(PyExc_ValueError, "dictionary update sequence "
                         "element #%zd has length %zd; 2 is required", i,
                         PySequence_Fast_GET_SIZE(pair));
            r = -1;
        }
        else {
            r = upbatch_add(h, ub, PySequence_Fast_GET_ITEM(pair, 0),
                            PySequence_Fast_GET_ITEM(pair, 1));
        }
        Py_DECREF(pair);
    }
    Py_DECREF(items);
    return r;
}

static int
map_update_impl(hmap *h, PyObject *arg, PyObject *kw)
{
    upbatch ub = {0};
    ub.e = PyMem_RawMalloc(sizeof(upentry) * UPDATE_BATCH);
    if (ub.e == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int r = 0;
    if (arg != NULL) {
        r = update_from(h, &ub, arg);
    }
    if (r == 0 && kw != NULL && PyDict_GET_SIZE(kw) > 0) {
        r = update_from(h, &ub, kw);
    }
    if (r == 0) {
        r = upbatch_flush(h, &ub);
    }
    else {
        /* Keep what was accepted before the error, as dict.update does. */
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        upbatch_flush(h, &ub);
        PyErr_Restore(t, v, tb);
    }
    PyMem_RawFree(ub.e);
    return r;
}

/* ------------------------------------------------------------------ */
/* clear (GIL held)                                                    */

/* Detach the tables under the lock, then empty them.  Nobody reads the
 * detached tables' slots any more (an iterator holding one sees clearseq
 * moved on), so emptying them needs no lock.  With bulk set, a table of
 * BULK_MIN entries or more is walked without the GIL, as update()'s
 * batches are: the walk moves every key object and value into one array
 * and frees the tables' keys and buckets, and the DECREFs follow with the
 * GIL (they can run __del__, which may use this map).  Without bulk (GC's
 * tp_clear and dealloc, which must not let other threads run in the
 * middle), for a small map, or without memory for the array, everything
 * is done with the GIL. */
static void
map_clear_impl(hmap *h, bool bulk)
{
    htab *cur, *old;
    map_lock(h);
    uint64_t n = h->count;
    gr_hmap_detach(h, &cur, &old);
    map_unlock(h);
    htab *ts[2] = {cur, old};
    PyObject **objs = NULL;
    if (bulk && n >= BULK_MIN &&
        n <= PY_SSIZE_T_MAX / (2 * sizeof(PyObject *))) {
        objs = PyMem_RawMalloc(2 * n * sizeof(PyObject *));
    }
    if (objs != NULL) {
        size_t got = 0;
        Py_BEGIN_ALLOW_THREADS
        for (int j = 0; j < 2; j++) {
            if (ts[j] != NULL) {
                got += gr_htab_drain(ts[j], objs + got);
                gr_htab_release(ts[j]);
            }
        }
        Py_END_ALLOW_THREADS
        for (size_t i = 0; i < got; i++) {
            Py_DECREF(objs[i]);
        }
        PyMem_RawFree(objs);
        return;
    }
    for (int j = 0; j < 2; j++) {
        if (ts[j] != NULL) {
            gr_htab_drain(ts[j], NULL);
            gr_htab_release(ts[j]);
        }
    }
}

/* ------------------------------------------------------------------ */
/* The Python type                                                     */

static PyObject *
map_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    hmap *h = (hmap *)type->tp_alloc(type, 0);
    if (h == NULL) {
        return NULL;
    }
    pthread_mutex_init(&h->waitmu, NULL);
    pthread_cond_init(&h->waitcv, NULL);
    h->hash0 = gr_gmap_fastrand();
    return (PyObject *)h;
}

static int
map_init(hmap *h, PyObject *args, PyObject *kw)
{
    PyObject *arg = NULL;
    if (!PyArg_UnpackTuple(args, "Map", 0, 1, &arg)) {
        return -1;
    }
    if (arg == NULL && (kw == NULL || PyDict_GET_SIZE(kw) == 0)) {
        return 0;
    }
    return map_update_impl(h, arg, kw);
}

static Py_ssize_t
map_len(hmap *h)
{
    map_lock(h);            /* a GIL-free update() may be inserting */
    Py_ssize_t n = h->count;
    map_unlock(h);
    return n;
}

static PyObject *
map_getitem(hmap *h, PyObject *k)
{
    int err;
    PyObject *v = map_lookup(h, k, &err);
    if (v == NULL && !err) {
        gr_set_key_error(k);
    }
    return v;
}

static int
map_setitem(hmap *h, PyObject *k, PyObject *v)
{
    if (v != NULL) {
        PyObject *prev;
        int r = map_store(h, k, v, STORE_ALWAYS, &prev);
        Py_XDECREF(prev);
        return r < 0 ? -1 : 0;
    }
    PyObject *okey, *elem;
    int r = map_delete(h, k, NULL, &okey, &elem);
    if (r < 0) {
        return -1;
    }
    if (r == 0) {
        gr_set_key_error(k);
        return -1;
    }
    Py_DECREF(okey);
    Py_DECREF(elem);
    return 0;
}

static int
map_contains(hmap *h, PyObject *k)
{
    int err;
    PyObject *v = map_lookup(h, k, &err);
    if (err) {
        return -1;
    }
    Py_XDECREF(v);
    return v != NULL;
}

static PyObject *
map_get(hmap *h, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get expected 1 or 2 arguments");
        return NULL;
    }
    int err;
    PyObject *v = map_lookup(h, args[0], &err);
    if (v == NULL && !err) {
        v = Py_NewRef(nargs == 2 ? args[1] : Py_None);
    }
    return v;
}

static PyObject *
map_pop(hmap *h, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "pop expected 1 or 2 arguments");
        return NULL;
    }
    PyObject *okey, *elem;
    int r = map_delete(h, args[0], NULL, &okey, &elem);
    if (r < 0) {
        return NULL;
    }
    if (r == 0) {
        if (nargs == 2) {
            return Py_NewRef(args[1]);
        }
        gr_set_key_error(args[0]);
        return NULL;
    }
    Py_DECREF(okey);
    return elem;
}

static PyObject *
map_setdefault(hmap *h, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError,
                        "setdefault expected 1 or 2 arguments");
        return NULL;
    }
    PyObject *d = nargs == 2 ? args[1] : Py_None;
    PyObject *prev;
    int r = map_store(h, args[0], d, STORE_IF_ABSENT, &prev);
    if (r < 0) {
        return NULL;
    }
    return r == 1 ? Py_NewRef(d) : prev;
}

static PyObject *
map_update(hmap *h, PyObject *args, PyObject *kw)
{
    PyObject *arg = NULL;
    if (!PyArg_UnpackTuple(args, "update", 0, 1, &arg)) {
        return NULL;
    }
    if (map_update_impl(h, arg, kw) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
map_clear(hmap *h, PyObject *unused)
{
    map_clear_impl(h, true);
    Py_RETURN_NONE;
}

static PyObject *
map_copy(hmap *h, PyObject *unused)
{
    hmap *c = (hmap *)map_new(Py_TYPE(h), NULL, NULL);
    if (c == NULL) {
        return NULL;
    }
    PyObject *items = map_items_list(h);
    if (items == NULL || map_update_impl(c, items, NULL) < 0) {
        Py_XDECREF(items);
        Py_DECREF(c);
        return NULL;
    }
    Py_DECREF(items);
    return (PyObject *)c;
}

/* ---- sync.Map's operations ----------------------------------------- */

static PyObject *
map_load(hmap *h, PyObject *k)
{
    int err;
    PyObject *v = map_lookup(h, k, &err);
    if (err) {
        return NULL;
    }
    if (v == NULL) {
        return Py_BuildValue("(OO)", Py_None, Py_False);
    }
    return Py_BuildValue("(NO)", v, Py_True);
}

static PyObject *
map_store_m(hmap *h, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "store expected 2 arguments");
        return NULL;
    }
    if (map_setitem(h, args[0], args[1]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
map_load_or_store(hmap *h, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "load_or_store expected 2 arguments");
        return NULL;
    }
    PyObject *prev;
    int r = map_store(h, args[0], args[1], STORE_IF_ABSENT, &prev);
    if (r < 0) {
        return NULL;
    }
    if (r == 1) {
        return Py_BuildValue("(OO)", args[1], Py_False);
    }
    return Py_BuildValue("(NO)", prev, Py_True);
}

static PyObject *
map_load_and_delete(hmap *h, PyObject *k)
{
    PyObject *okey, *elem;
    int r = map_delete(h, k, NULL, &okey, &elem);
    if (r < 0) {
        return NULL;
    }
    if (r == 0) {
        return Py_BuildValue("(OO)", Py_None, Py_False);
    }
    Py_DECREF(okey);
    return Py_BuildValue("(NO)", elem, Py_True);
}

static PyObject *
map_swap(hmap *h, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "swap expected 2 arguments");
        return NULL;
    }
    PyObject *prev;
    int r = map_store(h, args[0], args[1], STORE_ALWAYS, &prev);
    if (r < 0) {
        return NULL;
    }
    if (r == 1) {
        return Py_BuildValue("(OO)", Py_None, Py_False);
    }
    return Py_BuildValue("(NO)", prev, Py_True);
}

/* Replace k's value with new if it is `expected` (the same object).
 * Returns 1 swapped, 0 absent, 2 present with another value (*cur gets
 * it, a new reference), -1 on error. */
static int
swap_if_is(hmap *h, PyObject *k, PyObject *expected, PyObject *newv,
           PyObject **cur)
{
    kenc e;
    ckey c;
    *cur = NULL;
    if (encode_key(&e, k, &c) < 0) {
        return -1;
    }
    slotref s;
    int r = 0;
    map_lock(h);
    if (mapaccess(h, &c, &s)) {
        PyObject *v = s.b->slots[s.i].elem;
        if (v == expected) {
            Py_INCREF(newv);
            s.b->slots[s.i].elem = newv;
            *cur = v;       /* the replaced reference, released below */
            r = 1;
        }
        else {
            *cur = Py_NewRef(v);
            r = 2;
        }
    }
    map_unlock(h);
    kenc_free(&e);
    return r;
}

/* compare_and_swap/compare_and_delete compare with ==.  Calling __eq__
 * under the map lock is not allowed, so: compare the current value
 * outside the lock, then act only if that very object is still the value
 * (identity under the lock); if it changed meanwhile, compare again.
 * Linearizable: the swap happens at a moment the value equals `old`. */
static PyObject *
map_compare_and_swap(hmap *h, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "compare_and_swap expected 3 arguments");
        return NULL;
    }
    PyObject *k = args[0], *old = args[1], *newv = args[2];
    PyObject *expected = Py_NewRef(old);
    for (;;) {
        PyObject *cur;
        int r = swap_if_is(h, k, expected, newv, &cur);
        Py_DECREF(expected);
        if (r < 0) {
            return NULL;
        }
        if (r == 1) {
            Py_DECREF(cur);
            Py_RETURN_TRUE;
        }
        if (r == 0) {
            Py_RETURN_FALSE;
        }
        int eq = PyObject_RichCompareBool(cur, old, Py_EQ);
        if (eq <= 0) {
            Py_DECREF(cur);
            if (eq < 0) {
                return NULL;
            }
            Py_RETURN_FALSE;
        }
        expected = cur;     /* equal: swap if it is still this object */
    }
}

static PyObject *
map_compare_and_delete(hmap *h, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "compare_and_delete expected 2 arguments");
        return NULL;
    }
    PyObject *k = args[0], *old = args[1];
    PyObject *expected = Py_NewRef(old);
    for (;;) {
        PyObject *okey, *elem;
        int r = map_delete(h, k, expected, &okey, &elem);
        if (r < 0) {
            Py_DECREF(expected);
            return NULL;
        }
        if (r == 1) {
            Py_DECREF(expected);
            Py_DECREF(okey);
            Py_DECREF(elem);
            Py_RETURN_TRUE;
        }
        Py_DECREF(expected);
        if (r == 0) {
            Py_RETURN_FALSE;
        }
        int err;
        PyObject *cur = map_lookup(h, k, &err);
        if (cur == NULL) {
            if (err) {
                return NULL;
            }
            Py_RETURN_FALSE;
        }
        int eq = PyObject_RichCompareBool(cur, old, Py_EQ);
        if (eq <= 0) {
            Py_DECREF(cur);
            if (eq < 0) {
                return NULL;
            }
            Py_RETURN_FALSE;
        }
        expected = cur;
    }
}

/* incr(k, delta=1) -> new.  Exact ints are added under the lock (int
 * addition runs no Python code); any other value goes through a
 * compare-and-swap loop outside it.  A missing key counts as 0. */
static PyObject *
map_incr(hmap *h, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "incr expected 1 or 2 arguments");
        return NULL;
    }
    PyObject *k = args[0];
    PyObject *delta = nargs == 2 ? args[1] : NULL;
    PyObject *one = NULL;
    if (delta == NULL) {
        delta = one = PyLong_FromLong(1);
    }
    /* A missing key counts as 0: its new value is 0 + delta, computed
     * here, outside the lock (for an exact int it is delta itself), so
     * incr('k', 'x') is the TypeError of 0 + 'x' and stores nothing. */
    PyObject *first = NULL;
    if (PyLong_CheckExact(delta)) {
        first = Py_NewRef(delta);
    }
    else {
        PyObject *zero = PyLong_FromLong(0);
        first = zero != NULL ? PyNumber_Add(zero, delta) : NULL;
        Py_XDECREF(zero);
        if (first == NULL) {
            Py_XDECREF(one);
            return NULL;
        }
    }
    PyObject *result = NULL;
    kenc e;
    ckey c;
    if (encode_key(&e, k, &c) < 0) {
        Py_DECREF(first);
        Py_XDECREF(one);
        return NULL;
    }
    for (;;) {
        slotref s;
        PyObject *old = NULL, *cur = NULL;
        bool fast = PyLong_CheckExact(delta);
        map_lock(h);
        int r = gr_mapassign(h, &c, &s);
        if (r == 1) {
            /* New key: 0 + delta. */
            Py_INCREF(k);
            Py_INCREF(first);
            s.b->okeys[s.i] = k;
            s.b->slots[s.i].elem = first;
            result = Py_NewRef(first);
        }
        else if (r == 0 && fast && PyLong_CheckExact(s.b->slots[s.i].elem)) {
            PyObject *nv = PyNumber_Add(s.b->slots[s.i].elem, delta);
            if (nv != NULL) {
                old = s.b->slots[s.i].elem;
                s.b->slots[s.i].elem = nv;
                result = Py_NewRef(nv);
            }
        }
        else if (r == 0) {
            cur = Py_NewRef(s.b->slots[s.i].elem);
        }
        map_unlock(h);
        Py_XDECREF(old);
        if (r < 0) {
            PyErr_NoMemory();
            break;
        }
        if (cur == NULL) {
            break;          /* done, or PyNumber_Add failed (error set) */
        }
        /* Slow path: add outside the lock, then swap if unchanged. */
        PyObject *nv = PyNumber_Add(cur, delta);
        if (nv == NULL) {
            Py_DECREF(cur);
            break;
        }
        PyObject *seen;
        int sr = swap_if_is(h, k, cur, nv, &seen);
        Py_DECREF(cur);
        if (sr == 1) {
            Py_DECREF(seen);
            result = nv;
            break;
        }
        Py_DECREF(nv);
        Py_XDECREF(seen);
        if (sr < 0) {
            break;
        }
    }
    kenc_free(&e);
    Py_DECREF(first);
    Py_XDECREF(one);
    return result;
}

static PyObject *
map_stats(hmap *h, PyObject *unused)
{
    map_lock(h);
    Py_ssize_t count = h->count;
    int B = h->B;
    unsigned long long nov = h->noverflow;
    bool grow = growing(h);
    unsigned long long nevac = h->nevacuate;
    unsigned long long nold = grow ? (unsigned long long)noldbuckets(h) : 0;
    map_unlock(h);
    unsigned long long nb = 1ull << B;
    return Py_BuildValue("{snsisKsKsdsOsKsK}",
                         "count", count, "B", B, "buckets", nb,
                         "overflow", nov,
                         "load_factor", (double)count / (double)nb,
                         "growing", grow ? Py_True : Py_False,
                         "nevacuate", nevac, "oldbuckets", nold);
}

/* ---- equality and repr ----------------------------------------------- */

static PyObject *
map_richcompare(hmap *h, PyObject *other, int op)
{
    if ((op != Py_EQ && op != Py_NE) ||
        !(PyDict_Check(other) ||
          PyObject_TypeCheck(other, gr_globals.map.Map))) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    Py_ssize_t olen = PyObject_Length(other);
    if (olen < 0) {
        return NULL;
    }
    Py_ssize_t n;
    PyObject **arr = map_snapshot(h, &n);
    if (arr == NULL) {
        return NULL;
    }
    int eq = n == olen;
    for (Py_ssize_t i = 0; eq == 1 && i < n; i++) {
        PyObject *ov;
        if (PyDict_Check(other)) {
            ov = PyDict_GetItemWithError(other, arr[2 * i]);
            Py_XINCREF(ov);
        }
        else {
            int err;
            ov = map_lookup((hmap *)other, arr[2 * i], &err);
        }
        if (ov == NULL) {
            eq = PyErr_Occurred() ? -1 : 0;
            break;
        }
        eq = PyObject_RichCompareBool(arr[2 * i + 1], ov, Py_EQ);
        Py_DECREF(ov);
    }
    snapshot_free(arr, n);
    if (eq < 0) {
        return NULL;
    }
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static PyObject *
map_repr(hmap *h)
{
    int rc = Py_ReprEnter((PyObject *)h);
    if (rc != 0) {
        return rc > 0 ? PyUnicode_FromString("Map({...})") : NULL;
    }
    PyObject *d = PyDict_New();
    PyObject *items = d ? map_items_list(h) : NULL;
    PyObject *r = NULL;
    if (items != NULL) {
        Py_ssize_t n = PyList_GET_SIZE(items);
        int ok = 0;
        for (Py_ssize_t i = 0; i < n && ok == 0; i++) {
            PyObject *t = PyList_GET_ITEM(items, i);
            ok = PyDict_SetItem(d, PyTuple_GET_ITEM(t, 0),
                                PyTuple_GET_ITEM(t, 1));
        }
        if (ok == 0) {
            r = PyUnicode_FromFormat("Map(%R)", d);
        }
    }
    Py_XDECREF(items);
    Py_XDECREF(d);
    Py_ReprLeave((PyObject *)h);
    return r;
}

/* ---- GC ----------------------------------------------------------------- */

static int
visit_tab(htab *t, visitproc visit, void *arg)
{
    if (t == NULL) {
        return 0;
    }
    for (uintptr_t bi = 0; bi < bucketShift(t->B); bi++) {
        for (bmap *b = &t->buckets[bi]; b != NULL; b = b->overflow) {
            for (int i = 0; i < BUCKETCNT; i++) {
                if (b->tophash[i] >= minTopHash) {
                    Py_VISIT(b->okeys[i]);
                    Py_VISIT(b->slots[i].elem);
                }
            }
        }
    }
    return 0;
}

/* Runs with the GIL; every change to the tables is made by a GIL holder
 * except inside bulk sections, during which we report nothing (see the
 * header). */
static int
map_traverse(hmap *h, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(h));
    if (h->bulk) {
        return 0;
    }
    int r = visit_tab(h->buckets, visit, arg);
    if (r == 0) {
        r = visit_tab(h->oldbuckets, visit, arg);
    }
    return r;
}

static int
map_tp_clear(hmap *h)
{
    map_clear_impl(h, false);
    return 0;
}

static void
map_dealloc(hmap *h)
{
    PyTypeObject *tp = Py_TYPE(h);
    PyObject_GC_UnTrack(h);
    Py_TRASHCAN_BEGIN(h, map_dealloc)
    map_clear_impl(h, false);
    pthread_mutex_destroy(&h->waitmu);
    pthread_cond_destroy(&h->waitcv);
    tp->tp_free(h);
    Py_DECREF(tp);
    Py_TRASHCAN_END
}

/* ---- iterators and views ------------------------------------------------- */

static PyObject *
iter_new(hmap *h, int kind)
{
    mapiterobject *it = PyObject_GC_New(mapiterobject, gr_globals.map.Iter);
    if (it == NULL) {
        return NULL;
    }
    it->map = (hmap *)Py_NewRef((PyObject *)h);
    it->kind = kind;
    map_lock(h);
    gr_mapiterinit(h, &it->it);
    map_unlock(h);
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static PyObject *
iter_next(mapiterobject *it)
{
    hmap *h = it->map;
    if (h == NULL) {
        return NULL;
    }
    PyObject *k, *v;
    map_lock(h);
    bool more = gr_mapiternext(h, &it->it, &k, &v);
    if (more) {
        Py_INCREF(k);
        Py_INCREF(v);
    }
    map_unlock(h);
    if (!more) {
        gr_hiter_finish(&it->it);
        it->map = NULL;
        Py_DECREF(h);
        return NULL;
    }
    switch (it->kind) {
    case ITER_KEYS:
        Py_DECREF(v);
        return k;
    case ITER_VALUES:
        Py_DECREF(k);
        return v;
    default: {
        PyObject *t = PyTuple_Pack(2, k, v);
        Py_DECREF(k);
        Py_DECREF(v);
        return t;
    }
    }
}

static int
iter_traverse(mapiterobject *it, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(it));
    Py_VISIT(it->map);
    return 0;
}

static void
iter_dealloc(mapiterobject *it)
{
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    hmap *h = it->map;
    if (h != NULL) {
        map_lock(h);
        gr_hiter_finish(&it->it);
        map_unlock(h);
        Py_DECREF(h);
    }
    PyObject_GC_Del(it);
    Py_DECREF(tp);
}

static PyObject *
map_iter(hmap *h)
{
    return iter_new(h, ITER_KEYS);
}

static PyObject *
view_new(hmap *h, PyTypeObject *tp)
{
    mapviewobject *v = PyObject_GC_New(mapviewobject, tp);
    if (v == NULL) {
        return NULL;
    }
    v->map = (hmap *)Py_NewRef((PyObject *)h);
    PyObject_GC_Track(v);
    return (PyObject *)v;
}

static PyObject *
map_keys(hmap *h, PyObject *unused)
{
    return view_new(h, gr_globals.map.Keys);
}

static PyObject *
map_values(hmap *h, PyObject *unused)
{
    return view_new(h, gr_globals.map.Values);
}

static PyObject *
map_items(hmap *h, PyObject *unused)
{
    return view_new(h, gr_globals.map.Items);
}

static Py_ssize_t
view_len(mapviewobject *v)
{
    return map_len(v->map);     /* under the map lock, as len(map) */
}

static PyObject *
view_iter(mapviewobject *v)
{
    PyTypeObject *tp = Py_TYPE(v);
    int kind = tp == gr_globals.map.Keys ? ITER_KEYS
               : tp == gr_globals.map.Values ? ITER_VALUES : ITER_ITEMS;
    return iter_new(v->map, kind);
}

static int
keys_contains(mapviewobject *v, PyObject *k)
{
    return map_contains(v->map, k);
}

static int
items_contains(mapviewobject *v, PyObject *kv)
{
    if (!PyTuple_Check(kv) || PyTuple_GET_SIZE(kv) != 2) {
        return 0;
    }
    int err;
    PyObject *cur = map_lookup(v->map, PyTuple_GET_ITEM(kv, 0), &err);
    if (cur == NULL) {
        return err ? -1 : 0;
    }
    int r = PyObject_RichCompareBool(cur, PyTuple_GET_ITEM(kv, 1), Py_EQ);
    Py_DECREF(cur);
    return r;
}

static PyObject *
view_repr(mapviewobject *v)
{
    PyObject *list = PySequence_List((PyObject *)v);
    if (list == NULL) {
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat("%s(%R)", _PyType_Name(Py_TYPE(v)),
                                       list);
    Py_DECREF(list);
    return r;
}

static int
view_traverse(mapviewobject *v, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(v));
    Py_VISIT(v->map);
    return 0;
}

static void
view_dealloc(mapviewobject *v)
{
    PyTypeObject *tp = Py_TYPE(v);
    PyObject_GC_UnTrack(v);
    Py_XDECREF(v->map);
    PyObject_GC_Del(v);
    Py_DECREF(tp);
}

/* ---- specs ----------------------------------------------------------- */

#define FAST(f) (PyCFunction)(void (*)(void))(f)

static PyMethodDef map_methods[] = {
    {"get", FAST(map_get), METH_FASTCALL,
     "get($self, key, default=None, /)\n--\n\nThe value for key, or default."},
    {"pop", FAST(map_pop), METH_FASTCALL,
     "pop($self, key, default=<unset>, /)\n--\n\n"
     "Remove key and return its value; default, or KeyError, if absent."},
    {"setdefault", FAST(map_setdefault), METH_FASTCALL,
     "setdefault($self, key, default=None, /)\n--\n\n"
     "The value for key, inserting default first if absent."},
    {"update", FAST(map_update), METH_VARARGS | METH_KEYWORDS,
     "update($self, other=(), /, **kw)\n--\n\n"
     "Insert from a mapping or pairs, as dict.update; big inputs are "
     "inserted with the GIL released."},
    {"clear", FAST(map_clear), METH_NOARGS,
     "clear($self, /)\n--\n\nRemove every entry."},
    {"copy", FAST(map_copy), METH_NOARGS,
     "copy($self, /)\n--\n\nA shallow copy."},
    {"keys", FAST(map_keys), METH_NOARGS, "keys($self, /)\n--\n\nA keys view."},
    {"values", FAST(map_values), METH_NOARGS,
     "values($self, /)\n--\n\nA values view."},
    {"items", FAST(map_items), METH_NOARGS,
     "items($self, /)\n--\n\nAn items view."},
    {"load", FAST(map_load), METH_O,
     "load($self, key, /)\n--\n\n(value, ok): sync.Map's Load."},
    {"store", FAST(map_store_m), METH_FASTCALL,
     "store($self, key, value, /)\n--\n\nm[key] = value."},
    {"load_or_store", FAST(map_load_or_store), METH_FASTCALL,
     "load_or_store($self, key, value, /)\n--\n\n"
     "(actual, loaded): the present value, or store value."},
    {"load_and_delete", FAST(map_load_and_delete), METH_O,
     "load_and_delete($self, key, /)\n--\n\n(value, loaded), deleting."},
    {"swap", FAST(map_swap), METH_FASTCALL,
     "swap($self, key, value, /)\n--\n\n(previous, loaded), storing value."},
    {"compare_and_swap", FAST(map_compare_and_swap), METH_FASTCALL,
     "compare_and_swap($self, key, old, new, /)\n--\n\n"
     "Store new if the value == old; return whether it did."},
    {"compare_and_delete", FAST(map_compare_and_delete), METH_FASTCALL,
     "compare_and_delete($self, key, old, /)\n--\n\n"
     "Delete key if its value == old; return whether it did."},
    {"incr", FAST(map_incr), METH_FASTCALL,
     "incr($self, key, delta=1, /)\n--\n\n"
     "Add delta to the value (a missing key counts as 0); return it."},
    {"stats", FAST(map_stats), METH_NOARGS,
     "stats($self, /)\n--\n\nThe live internals: count, B, buckets, "
     "overflow, load_factor, growing, nevacuate, oldbuckets."},
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot map_slots[] = {
    {Py_tp_doc, "Map(mapping_or_pairs=(), /, **kw)\n--\n\n"
                "Go's hash map, safe for any number of goroutines and "
                "threads; its bulk work releases the GIL."},
    {Py_tp_new, map_new},
    {Py_tp_init, map_init},
    {Py_tp_dealloc, map_dealloc},
    {Py_tp_traverse, map_traverse},
    {Py_tp_clear, map_tp_clear},
    {Py_tp_iter, map_iter},
    {Py_tp_repr, map_repr},
    {Py_tp_richcompare, map_richcompare},
    {Py_tp_hash, PyObject_HashNotImplemented},
    {Py_tp_methods, map_methods},
    {Py_mp_length, map_len},
    {Py_mp_subscript, map_getitem},
    {Py_mp_ass_subscript, map_setitem},
    {Py_sq_contains, map_contains},
    {0, NULL},
};

static PyType_Spec map_spec = {
    .name = "goroutine.Map",
    .basicsize = sizeof(hmap),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = map_slots,
};

static PyType_Slot iter_slots[] = {
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, iter_next},
    {Py_tp_traverse, iter_traverse},
    {Py_tp_dealloc, iter_dealloc},
    {0, NULL},
};

static PyType_Spec iter_spec = {
    .name = "goroutine.map_iterator",
    .basicsize = sizeof(mapiterobject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = iter_slots,
};

#define VIEW_SPEC(var, cname, contains)                                  \
    static PyType_Slot var##_slots[] = {                                 \
        {Py_tp_iter, view_iter}, {Py_tp_repr, view_repr},                \
        {Py_tp_traverse, view_traverse}, {Py_tp_dealloc, view_dealloc},  \
        {Py_mp_length, view_len}, {Py_sq_contains, contains}, {0, NULL}};\
    static PyType_Spec var##_spec = {                                    \
        .name = "goroutine." cname,                                      \
        .basicsize = sizeof(mapviewobject),                              \
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |               \
                 Py_TPFLAGS_IMMUTABLETYPE,                               \
        .slots = var##_slots};

VIEW_SPEC(keys, "map_keys", keys_contains)
VIEW_SPEC(values, "map_values", NULL)
VIEW_SPEC(items, "map_items", items_contains)

/* Module init, staging (state.h): Map, its iterator and its views. */
int
gr_gomap_init(gr_globals_t *st)
{
    st->map.Iter = (PyTypeObject *)PyType_FromSpec(&iter_spec);
    st->map.Keys = (PyTypeObject *)PyType_FromSpec(&keys_spec);
    st->map.Values = (PyTypeObject *)PyType_FromSpec(&values_spec);
    st->map.Items = (PyTypeObject *)PyType_FromSpec(&items_spec);
    st->map.Map = (PyTypeObject *)PyType_FromSpec(&map_spec);
    if (st->map.Iter == NULL || st->map.Keys == NULL ||
        st->map.Values == NULL || st->map.Items == NULL ||
        st->map.Map == NULL) {
        return -1;      /* the caller clears what was made */
    }
    return 0;
}

int
gr_gomap_exec(PyObject *module)
{
    return PyModule_AddObjectRef(module, "Map",
                                 (PyObject *)gr_globals.map.Map);
}
