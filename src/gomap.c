/*
 * gomap.c: goroutine.Map, the hash map of Go's runtime (hmap/bmap), as a
 * thread-safe Python mapping whose hashing and probing never touch a Python
 * object, so that they can run without the GIL.
 *
 * Layout (the seed's chapter 7, made precise)
 * -------------------------------------------
 * An hmap owns 2^B buckets (one htab).  A bucket (bmap) holds 8 slots: first
 * the 8 tophash bytes, then the 8 keys, then the 8 original key objects, then
 * the 8 values, then the overflow pointer.  Keys are grouped apart from
 * values as in Go, so a probe reads tophash, then keys, and touches values
 * only on a hit.  A key's hash picks its bucket with its low B bits and its
 * tophash byte with its high 8 bits; a probe compares the tophash byte
 * before it compares a key.  A full bucket chains overflow buckets.
 *
 * Keys are stored in a canonical byte form (see "Keys" below) and compared
 * as bytes: a short key as the three words of its slot, a longer one with
 * memcmp.  The hash is our own multiply-fold hash of those bytes with a
 * per-map seed (hash0).  The original key object is kept alongside, so
 * iteration yields the key object that was inserted first, as dict does
 * (m[1] = a; m[1.0] = b; list(m) == [1]).
 *
 * tophash values below minTopHash are marks, as in Go:
 *   emptyRest (0)       this slot and every later slot and overflow bucket
 *                       in the chain are empty: probes stop here;
 *   emptyOne (1)        this slot is empty;
 *   evacuatedX (2)      the entry moved to the first half of the new table;
 *   evacuatedY (3)      the entry moved to the second half;
 *   evacuatedEmpty (4)  the slot was empty when its bucket was evacuated.
 * A live slot's tophash is >= minTopHash (5): hash>>56, plus 5 when smaller.
 *
 * Growth.  An insert that finds the map over its load factor (count > 8 and
 * count > 6.5 * 2^B) doubles the table; one that finds too many overflow
 * buckets (noverflow >= 2^min(B, 15), Go's tooManyOverflowBuckets) starts a
 * same-size growth, which packs the entries left behind by deletions.  Both
 * only allocate the new table and hang the old one on oldbuckets; every
 * later write (assign or delete) evacuates the old bucket its key maps to and
 * the old bucket at nevacuate, so the cost of growth is spread over writes,
 * never more than two old buckets plus the one being written.  When the
 * doubling evacuates an entry, bit B-1 of its hash sends it to bucket i (X)
 * or i + 2^(B-1) (Y).  A NaN key has no stable hash: it goes by the low bit
 * of its tophash, exactly like Go, and that is also how an iterator decides.
 * Measured: load factor 6.5 and 8 slots are Go's constants (Go's map_test
 * table: 6.5 is where overflow buckets and wasted slots balance); we keep
 * them so the numbers in stats() read like the seed's chapter.
 *
 * Iteration is Go's mapiternext.  An iterator remembers the table it started
 * on (it holds a reference to it: tables are reference counted for exactly
 * this), a random start bucket and a random slot offset.  When the map is
 * mid-growth on the iterator's own table size, it reads the old bucket that
 * has not been evacuated yet and keeps only the entries that will land in
 * the bucket it is visiting (checkBucket).  When the map grew since the
 * iterator started, the iterator keeps walking its old table; an evacuated
 * slot there still has its key bytes, and the entry is looked up in the
 * current table (so a deleted one is skipped and an updated one yields its
 * new value).  Result: an entry present for the whole iteration is yielded
 * exactly once; one added or deleted meanwhile may or may not be.  The
 * iterator never raises "changed size during iteration".  clear() bumps
 * clearseq, which ends every running iteration (all entries left).
 *
 * Keys
 * ----
 * The canonical form is a tag byte and a payload; variable-length parts are
 * length-prefixed so concatenations (tuples) stay unambiguous:
 *   'N'                         None
 *   'I' int64                   an int (bool included) in int64 range, or a
 *                               float with an integral value in that range
 *   'L' u32 len, hex digits     any other integral number (int beyond int64,
 *                               or a float with such an integral value)
 *   'F' 8 bytes                 any other float (fractional, +-inf)
 *   'n'                         NaN: the key is marked NaN and never equal
 *   'S' u32 len, UTF-8          str (lone surrogates pass through)
 *   'B' u32 len, bytes          bytes
 *   'T' u32 count, items        tuple
 * So 1, 1.0 and True are one key, -0.0 is 0, and 2**53 + 1 is not
 * 2.0**53.  Encoding calls no Python code (subclasses of these types are
 * encoded by value; their __eq__/__hash__ are never called).  A NaN
 * anywhere in a key (also inside a tuple) marks it NaN: a lookup never
 * hits, each insert is a new entry with a random hash, as in Go.  A NaN
 * entry can therefore leave the map only through clear(), which lets an
 * evacuated slot keep plain (borrowed) copies of a NaN entry's key and
 * value pointers for iterators: they stay valid until clear() ends those
 * iterations.  Keys of up to GKEY_INLINE bytes live in the slot; longer
 * ones in a keybuf shared, with an atomic count, between an old slot and
 * its evacuated copy (and between a map and its copy()).
 *
 * Invariants
 * ----------
 *   oldbuckets != NULL  <=>  growing; then nevacuate < 2^oldB, every old
 *       bucket below nevacuate is evacuated, and sameSizeGrow says whether
 *       the new table has the same size.
 *   a slot owns its key (inline, or one reference to its keybuf) iff its
 *       tophash is live or evacuatedX/Y; it owns its key object and value
 *       iff its tophash is live.
 *   count == the number of live slots in buckets and oldbuckets.
 *   a table that no hmap references has no live slot (clear drains it).
 *   emptyRest at slot i means no live slot after i in that chain.
 *   a key of up to GKEY_INLINE bytes is zero past its length, in a slot
 *       and in a ckey's words, so keyeq compares it as three words.
 *
 * Locking
 * -------
 * hmap.lock guards every field except bulk; htab.refs and keybuf.refs are
 * atomic so that an iterator can drop its table without the lock.  Nothing
 * that can run Python code (a DECREF, __eq__, a GC-tracked allocation) is
 * ever done while holding the lock: removed values go to the caller, which
 * releases them after unlocking.
 *
 * Order: the lock is never waited for while holding the GIL.  It is tried
 * first (uncontended: one CAS on a word); when busy, the GIL is released
 * around the wait.  The other way round is allowed: a thread may hold the
 * lock while it waits for the GIL (after a contended wait), because the
 * GIL holder never blocks on the lock.  This is CPython's own recipe for
 * the lock of a buffered io object.
 *
 * Without the GIL run: the inserts of update() batches (bulk), the table
 * duplication of copy() (bulk), and the draining of the tables that clear()
 * detached.  While a bulk section runs on a map, its pointers change under
 * the GC's feet, so tp_traverse (always run with the GIL) reports nothing
 * for a map whose bulk counter is set; its values then merely look
 * externally referenced, which keeps them alive one collection longer and
 * is never unsafe.  bulk changes only with the GIL held, so it is stable
 * during a collection.
 *
 * The cost of a get or set
 * ------------------------
 * m[k] and m[k] = v with the GIL held, an int or short str key, go: the
 * mp_subscript/mp_ass_subscript slot; encode_key, which builds the key's
 * canonical bytes as words in registers (ckey_int64, ckey_short_ascii)
 * instead of writing bytes and reading words back over them, which stalled
 * on store forwarding; the lock word's CAS; memhash, two multiplies for a
 * key of up to 16 bytes; the bucket's 8 tophash bytes matched as one word
 * (SWAR), and the key compared as three words; the lock's exchange.
 * Measured against a dict in one process on map_get_set's loop
 * (docs/map.md): 1.9x before this path was built, 1.3-1.4x after.  In a
 * profile of that loop the map's code is half the time where dict's is a
 * third; the largest items left are mapassign's first read of the bucket
 * (336 bytes, so a table of 2000 keys does not stay in L1), the lock's two
 * atomic instructions and the generic PyObject_GetItem/SetItem (dict has
 * specialized bytecodes).  With 16 keys, all in L1, the ratio is the same:
 * it is instructions more than cache misses.
 *
 * Rejected, measured: not taking the lock at all while no GIL-free
 * section is announced (sound under the GIL, since every table access
 * outside a bulk section holds the GIL; no gain outside the noise, so the
 * simpler rule stays).
 */
#include "core.h"

#include <math.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>

/* Short keys are built and compared as words whose byte order is the
 * canonical bytes' (see ckey); every platform we build for is
 * little-endian. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "goroutine: gomap.c assumes a little-endian target"
#endif

/* ------------------------------------------------------------------ */
/* Constants                                                           */

#define BUCKETCNT 8           /* slots per bucket: Go's bucketCnt */
#define LOADFACTOR_NUM 13     /* 6.5 == 13/2: Go's loadFactorNum/Den */
#define LOADFACTOR_DEN 2

/* tophash marks (see the header) */
#define emptyRest 0
#define emptyOne 1
#define evacuatedX 2
#define evacuatedY 3
#define evacuatedEmpty 4
#define minTopHash 5

#define sameSizeGrow 1        /* hmap.flags: the current growth keeps B */

/* Keys of up to 20 bytes stay in the slot: an int is 9 bytes, a str up to
 * 15 UTF-8 bytes; 20 makes a gkey 24 bytes with no padding. */
#define GKEY_INLINE 20
#define GKEY_NAN 0x80000000u  /* gkey.len flag: the key holds a NaN */
#define GKEY_MAXLEN 0x7fffffffu

/* Batches of update(): 64k entries (2.5 MB) per GIL-free insert; a batch
 * under BULK_MIN entries is inserted with the GIL (releasing it costs a
 * switch interval for the other threads' benefit only when there is
 * enough work).  copy() and clear() release the GIL from BULK_MIN entries. */
#define UPDATE_BATCH 65536
#define BULK_MIN 4096

/* update() prefetches the bucket of the entry PREFETCH_AHEAD entries
 * ahead, for tables of 2^PREFETCH_MIN_B buckets (344 KB) or more: enough
 * misses in flight to hide DRAM latency, and no extra hashing for a table
 * that stays in cache.  Measured on 1M int pairs (4, 8 and 16 ahead are
 * alike; prefetching the whole bucket gains nothing over its first line)
 * and on 1000 (where prefetching cost ~7%). */
#define PREFETCH_AHEAD 8
#define PREFETCH_MIN_B 10

#define NOCHECK ((uintptr_t)-1)  /* hiter.checkBucket: no filtering */

/* ------------------------------------------------------------------ */
/* Types                                                               */

/* A key longer than GKEY_INLINE bytes. */
typedef struct {
    size_t refs;              /* atomic: slots (of any map) sharing it */
    uint8_t data[];           /* the canonical bytes, zero padded to a
                                 multiple of 16 (memhash reads blocks) */
} keybuf;

/* A stored key: its canonical bytes, inline or in a keybuf.  Read as
 * three little-endian words, an inline key is its bytes zero padded
 * (words 0, 1 and the low half of 2) and its length (the high half of
 * word 2): the image keyeq compares. */
typedef struct {
    uint8_t b[GKEY_INLINE];   /* the bytes, zero past the length, or a
                                 keybuf * (memcpy'd) when the length
                                 exceeds GKEY_INLINE */
    uint32_t len;             /* byte length | GKEY_NAN; 0 in empty slots */
} gkey;

/* A bucket: 8 slots, keys before values, as in Go. */
typedef struct bmap {
    uint8_t tophash[BUCKETCNT];   /* hash>>56 per slot, or a mark */
    gkey keys[BUCKETCNT];         /* canonical keys */
    PyObject *okeys[BUCKETCNT];   /* key objects as first inserted (owned
                                     when live) */
    PyObject *elems[BUCKETCNT];   /* values (owned when live) */
    struct bmap *overflow;        /* next bucket of the chain, or NULL */
} bmap;

/* A bucket array: the unit iterators keep alive. */
typedef struct {
    size_t refs;              /* atomic: the hmap (as buckets or
                                 oldbuckets) plus iterators */
    uint8_t B;                /* log2 of the number of buckets */
    bmap buckets[];           /* 2^B buckets; overflow ones are separate
                                 allocations, freed with the table */
} htab;

/* The map object. */
typedef struct {
    PyObject_HEAD
    int lock;                 /* atomic: 0 free, 1 held, 2 held and maybe
                                 waited for (see lock_try).  Guards
                                 all fields below but bulk; never call
                                 Python, DECREF or allocate a GC object
                                 while holding it; never wait for it
                                 while holding the GIL */
    pthread_mutex_t waitmu;   /* guards the sleep on waitcv */
    pthread_cond_t waitcv;    /* signalled when a waited-for lock is
                                 released */
    Py_ssize_t count;         /* live entries: len(m) */
    uint8_t B;                /* log2 of the current table size */
    uint8_t flags;            /* sameSizeGrow */
    uint64_t noverflow;       /* overflow buckets in buckets */
    uint64_t hash0;           /* hash seed, renewed when count drops to 0 */
    htab *buckets;            /* current table; NULL until the first insert */
    htab *oldbuckets;         /* table being evacuated; NULL unless growing */
    uintptr_t nevacuate;      /* old buckets below this are evacuated */
    uint64_t clearseq;        /* bumped by clear(): ends iterations */
    int bulk;                 /* GIL-guarded: GIL-free sections running on
                                 this map (tp_traverse reports nothing) */
} hmap;

/* A key to look up or insert: canonical bytes not (yet) in a slot.
 * The common short keys are built as words, in registers, and only ever
 * read back as the same words: writing bytes and reading words over them
 * stalled on store forwarding (measured: half of the encoder's time). */
typedef struct {
    uint64_t w[4];            /* a key of up to GKEY_INLINE bytes: its
                                 bytes zero padded (w[3] is always 0, so
                                 memhash can read two 16-byte blocks) */
    uint32_t len;             /* byte length | GKEY_NAN (a NaN is never
                                 equal to anything) */
    const uint8_t *p;         /* a longer key's bytes, zero padded to a
                                 multiple of 16; NULL for a short key */
    keybuf *kb;               /* owned buffer holding p, that mapassign may
                                 steal (then sets it NULL); or NULL */
} ckey;

/* A slot found or made by mapaccess/mapassign. */
typedef struct {
    bmap *b;
    int i;
} slotref;

/* Go's hiter: the state of one iteration. */
typedef struct {
    htab *tab;                /* it.buckets: table iterated (a reference) */
    htab *btab;               /* reference on the old table bptr is in,
                                 when that is not tab; else NULL */
    bmap *bptr;               /* current bucket, or NULL between buckets */
    uintptr_t startBucket;    /* random first bucket */
    uintptr_t bucket;         /* next bucket index to visit */
    uintptr_t checkBucket;    /* bucket whose entries bptr (an old bucket)
                                 is filtered for, or NOCHECK */
    uint64_t clearseq;        /* hmap.clearseq at the start */
    uint8_t B;                /* tab->B */
    uint8_t offset;           /* random slot offset within buckets */
    uint8_t i;                /* next slot of bptr */
    bool checkSame;           /* bptr's growth was same-size: no filter */
    bool wrapped;             /* bucket passed the end once */
    bool done;                /* finished; references dropped */
} hiter;

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
/* Hashing and random numbers (GIL-free)                               */

/* Fold the 128-bit product: the mixing step of the hash and of fastrand. */
static inline uint64_t
mix(uint64_t a, uint64_t b)
{
#ifdef __SIZEOF_INT128__
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
    uint64_t ah = a >> 32, al = (uint32_t)a, bh = b >> 32, bl = (uint32_t)b;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
    uint64_t lo = (mid << 32) | (uint32_t)ll;
    uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return lo ^ hi;
#endif
}

static inline uint64_t
rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t
rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* Odd constants with about half their bits set. */
#define H0 0x9e3779b97f4a7c15ull
#define H1 0xc2b2ae3d27d4eb4full
#define H2 0xd6e8feb86659fd93ull
#define H3 0xa0761d6478bd642full
#define H4 0xe7037ed1a0b428dbull

static inline uint64_t
rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The r < 8 bytes at q as a word, zero above them, reading no byte
 * outside q[0..r) (wyhash's overlapping reads). */
static inline uint64_t
rdtail(const uint8_t *q, size_t r)
{
    if (r >= 4) {
        return rd32(q) | (rd32(q + r - 4) << (8 * (r - 4)));
    }
    if (r == 0) {
        return 0;
    }
    return (uint64_t)q[0] | ((uint64_t)q[r >> 1] << (8 * (r >> 1))) |
           ((uint64_t)q[r - 1] << (8 * (r - 1)));
}

/* memhash: 16 bytes per multiply.  The state enters both factors through
 * the seed-dependent h, so an attacker who does not know the seed cannot
 * aim a block at a zero factor.  n >= 1 (every key has a tag byte), and p
 * is zero padded to a multiple of 16 bytes, so every block is two whole
 * words and a short key costs two multiplies; the length is xor'ed into
 * the seed, which makes the padding unambiguous. */
static inline uint64_t
memhash(const uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t h = seed ^ (uint64_t)n;
    for (size_t i = 0; i < n; i += 16) {
        h = mix(rd64(p + i) ^ h ^ H2, rd64(p + i + 8) ^ rotl(h, 32) ^ H3);
    }
    return mix(h ^ H4, h ^ H0) ^ h;
}

/* fastrand: a per-thread generator (Go's fastrand), for seeds, NaN hashes
 * and iteration starts.  Not for secrets. */
static _Thread_local uint64_t rand_state;
static uint64_t rand_counter;

static uint64_t
fastrand(void)
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
/* Keys (GIL-free parts)                                               */

static inline uint32_t
gkey_len(const gkey *k)
{
    return k->len & GKEY_MAXLEN;
}

static inline keybuf *
gkey_buf(const gkey *k)
{
    keybuf *kb;
    memcpy(&kb, k->b, sizeof kb);
    return kb;
}

/* Drop the key a slot owns. */
static void
gkey_release(gkey *k)
{
    if (gkey_len(k) > GKEY_INLINE) {
        keybuf *kb = gkey_buf(k);
        if (__atomic_sub_fetch(&kb->refs, 1, __ATOMIC_ACQ_REL) == 0) {
            PyMem_RawFree(kb);
        }
    }
    k->len = 0;
}

/* Copy a slot's key into another slot, sharing its keybuf. */
static void
gkey_share(gkey *dst, const gkey *src)
{
    *dst = *src;
    if (gkey_len(src) > GKEY_INLINE) {
        __atomic_add_fetch(&gkey_buf(src)->refs, 1, __ATOMIC_RELAXED);
    }
}

static inline uint32_t
ckey_len(const ckey *c)
{
    return c->len & GKEY_MAXLEN;
}

static inline bool
ckey_nan(const ckey *c)
{
    return (c->len & GKEY_NAN) != 0;
}

/* The canonical bytes, zero padded to a multiple of 16. */
static inline const uint8_t *
ckey_bytes(const ckey *c)
{
    return c->p != NULL ? c->p : (const uint8_t *)c->w;
}

/* A ckey from a key in slot format: k, with a longer key's bytes in kb.
 * c->kb is left NULL (the caller sets it when it owns kb). */
static inline void
ckey_load(ckey *c, const gkey *k, keybuf *kb)
{
    c->len = k->len;
    c->p = NULL;
    c->kb = NULL;
    if (gkey_len(k) <= GKEY_INLINE) {
        memcpy(c->w, k, 3 * sizeof(uint64_t));
        c->w[2] &= 0xffffffffu;         /* the bytes without the length */
        c->w[3] = 0;
    }
    else {
        c->p = kb->data;
    }
}

/* The key of a slot as a ckey (p points into its keybuf). */
static inline void
ckey_of(const gkey *k, ckey *c)
{
    ckey_load(c, k, gkey_len(k) > GKEY_INLINE ? gkey_buf(k) : NULL);
}

/* A short key's slot image (see gkey), written as whole words. */
static inline void
ckey_image(const ckey *c, gkey *k)
{
    uint64_t x[3] = {c->w[0], c->w[1], c->w[2] | (uint64_t)c->len << 32};
    memcpy(k, x, sizeof x);
}

/* A keybuf holding a copy of the n bytes at p, padded.  NULL when out of
 * memory (no error set: callers may not hold the GIL). */
static keybuf *
keybuf_new(const uint8_t *p, uint32_t n)
{
    size_t padded = ((size_t)n + 15) & ~(size_t)15;
    keybuf *kb = PyMem_RawMalloc(sizeof(keybuf) + padded);
    if (kb != NULL) {
        kb->refs = 1;
        memcpy(kb->data, p, n);
        memset(kb->data + n, 0, padded - n);
    }
    return kb;
}

static inline uint64_t
ckey_hash(const ckey *c, uint64_t seed)
{
    return memhash(ckey_bytes(c), ckey_len(c), seed);
}

/* The hash of a slot's key (not NaN). */
static inline uint64_t
gkey_hash(const gkey *k, uint64_t seed)
{
    ckey c;
    ckey_of(k, &c);
    return ckey_hash(&c, seed);
}

/* Store c into an empty slot's key.  Returns 0, or -1 when out of memory
 * (nothing stored).  Steals c->kb when there is one. */
static int
gkey_store(gkey *k, ckey *c)
{
    uint32_t len = ckey_len(c);
    if (len <= GKEY_INLINE) {
        ckey_image(c, k);
        return 0;
    }
    keybuf *kb = c->kb;
    if (kb != NULL) {
        c->kb = NULL;
    }
    else {
        kb = keybuf_new(c->p, len);
        if (kb == NULL) {
            return -1;
        }
    }
    memcpy(k->b, &kb, sizeof kb);
    k->len = c->len;
    return 0;
}

/* Is slot key k the key c?  c must not be NaN (callers never look one
 * up).  A short key is compared as the three words of its image, which
 * holds because both sides are zero past the length; the length in the
 * last word also tells a short key from a longer or NaN one. */
static inline bool
keyeq(const gkey *k, const ckey *c)
{
    if (ckey_len(c) <= GKEY_INLINE) {
        uint64_t x[3];
        memcpy(x, k, sizeof x);
        return ((x[0] ^ c->w[0]) | (x[1] ^ c->w[1]) |
                (x[2] ^ (c->w[2] | (uint64_t)c->len << 32))) == 0;
    }
    return k->len == c->len &&
           memcmp(gkey_buf(k)->data, c->p, ckey_len(c)) == 0;
}

/* ------------------------------------------------------------------ */
/* Tables (GIL-free)                                                   */

static inline uintptr_t
bucketShift(uint8_t B)
{
    return (uintptr_t)1 << B;
}

static inline uintptr_t
bucketMask(uint8_t B)
{
    return bucketShift(B) - 1;
}

static inline uint8_t
tophash(uint64_t hash)
{
    uint8_t top = (uint8_t)(hash >> 56);
    return top < minTopHash ? top + minTopHash : top;
}

static inline bool
isEmpty(uint8_t top)
{
    return top <= emptyOne;
}

static inline bool
evacuated(const bmap *b)
{
    uint8_t h = b->tophash[0];
    return h > emptyOne && h < minTopHash;
}

/* The 8 tophash bytes of a bucket as one word (byte i is slot i: we are
 * little-endian). */
static inline uint64_t
tophashes(const bmap *b)
{
    uint64_t w;
    memcpy(&w, b->tophash, sizeof w);
    return w;
}

#define BYTES_01 0x0101010101010101ull
#define BYTES_80 0x8080808080808080ull

/* Bit 7 of byte i is set when byte i of w is zero: exact for the lowest
 * zero byte, and any other byte it flags lies above a zero byte, so a
 * caller that takes every flagged byte confirms it.  Probing a bucket
 * this way (SWAR, as Go's Swiss tables do) replaces an 8-step loop whose
 * exit at a data-dependent slot cost a mispredicted branch per probe. */
static inline uint64_t
zerobytes(uint64_t w)
{
    return (w - BYTES_01) & ~w & BYTES_80;
}

/* The slot a flagged bit of zerobytes() stands for. */
static inline int
flagged_slot(uint64_t m)
{
    return __builtin_ctzll(m) >> 3;
}

/* Find k, whose tophash is top, in the chain starting at b.  Every slot
 * whose tophash is top is a candidate; an emptyRest ends the chain, and
 * empty marks never equal a live tophash, so this finds what Go's slot by
 * slot scan finds. */
static inline bool
chain_find(bmap *b, uint8_t top, const ckey *k, slotref *out)
{
    for (; b != NULL; b = b->overflow) {
        uint64_t w = tophashes(b);
        for (uint64_t m = zerobytes(w ^ (top * BYTES_01)); m != 0;
             m &= m - 1) {
            int i = flagged_slot(m);
            if (b->tophash[i] == top && keyeq(&b->keys[i], k)) {
                out->b = b;
                out->i = i;
                return true;
            }
        }
        if (zerobytes(w) != 0) {
            return false;       /* an emptyRest */
        }
    }
    return false;
}

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

static htab *
htab_new(uint8_t B)
{
    htab *t = PyMem_RawCalloc(1, sizeof(htab) + bucketShift(B) * sizeof(bmap));
    if (t != NULL) {
        t->refs = 1;
        t->B = B;
    }
    return t;
}

/* Move the objects of every live slot of t out (into out[], which has room
 * for 2 per live slot, or DECREF'd on the spot when out is NULL, which
 * needs the GIL) and mark the slots empty.  Called on tables no hmap
 * references any more (clear, dealloc), so no lock is needed: iterators
 * holding t see the map's clearseq moved on and never read it again.
 * Returns the number of pointers stored in out. */
static size_t
htab_drain(htab *t, PyObject **out)
{
    size_t n = 0;
    for (uintptr_t bi = 0; bi < bucketShift(t->B); bi++) {
        for (bmap *b = &t->buckets[bi]; b != NULL; b = b->overflow) {
            for (int i = 0; i < BUCKETCNT; i++) {
                if (b->tophash[i] < minTopHash) {
                    continue;
                }
                PyObject *k = b->okeys[i], *v = b->elems[i];
                b->okeys[i] = b->elems[i] = NULL;
                b->tophash[i] = emptyOne;
                gkey_release(&b->keys[i]);
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
                    gkey_release(&b->keys[i]);
                }
            }
            bmap *next = b->overflow;
            if (b != &t->buckets[bi]) {
                PyMem_RawFree(b);
            }
            b = next;
        }
    }
    PyMem_RawFree(t);
}

static inline void
htab_incref(htab *t)
{
    __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
}

/* Drop a reference: safe anywhere, with or without the lock or the GIL. */
static void
htab_release(htab *t)
{
    if (t != NULL && __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        htab_free(t);
    }
}

/* ------------------------------------------------------------------ */
/* The map: Go's algorithms (lock held, GIL-free)                      */

static inline bool
growing(const hmap *h)
{
    return h->oldbuckets != NULL;
}

static inline uintptr_t
noldbuckets(const hmap *h)
{
    uint8_t oldB = h->B;
    if (!(h->flags & sameSizeGrow)) {
        oldB--;
    }
    return bucketShift(oldB);
}

static inline uintptr_t
oldbucketmask(const hmap *h)
{
    return noldbuckets(h) - 1;
}

static inline uint64_t
keyhash(const hmap *h, const ckey *k)
{
    if (ckey_nan(k)) {
        return fastrand();
    }
    return ckey_hash(k, h->hash0);
}

/* newoverflow: chain an empty overflow bucket after b.  NULL when out of
 * memory. */
static bmap *
newoverflow(hmap *h, bmap *b)
{
    bmap *ovf = PyMem_RawCalloc(1, sizeof(bmap));
    if (ovf != NULL) {
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
        htab_release(old);
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
                gkey *k = &b->keys[i];
                bool nan = (k->len & GKEY_NAN) != 0;
                if (!(h->flags & sameSizeGrow)) {
                    if (nan) {
                        /* No stable hash: the tophash's low bit decides,
                         * and a fresh random tophash spreads NaNs over the
                         * next growth (Go's rule; mapiternext mirrors it). */
                        useY = top & 1;
                        top = tophash(fastrand());
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
                gkey_share(&d->keys[di], k);
                d->okeys[di] = b->okeys[i];
                d->elems[di] = b->elems[i];
                if (!nan) {
                    /* A NaN entry's pointers stay as borrowed copies for
                     * iterators (valid until clear(), see the header). */
                    b->okeys[i] = b->elems[i] = NULL;
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


/* mapaccess: find key k.  Returns true and its slot, or false. */
static bool
mapaccess(const hmap *h, const ckey *k, slotref *out)
{
    if (h->count == 0 || ckey_nan(k)) {
        return false;
    }
    uint64_t hash = ckey_hash(k, h->hash0);
    uintptr_t m = bucketMask(h->B);
    bmap *b = &h->buckets->buckets[hash & m];
    if (h->oldbuckets != NULL) {
        if (!(h->flags & sameSizeGrow)) {
            m >>= 1;
        }
        bmap *oldb = &h->oldbuckets->buckets[hash & m];
        if (!evacuated(oldb)) {
            b = oldb;
        }
    }
    return chain_find(b, tophash(hash), k, out);
}

/* mapassign: find k's slot, or make one.  Returns 0 with an existing slot,
 * 1 with a new slot (key stored, okeys/elems NULL: the caller fills them
 * and the count already includes it), -1 when out of memory (map
 * unchanged).  May start a growth; always does growWork. */
static int
mapassign(hmap *h, ckey *k, slotref *out)
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
        if (!ckey_nan(k)) {
            for (uint64_t m = zerobytes(w ^ (top * BYTES_01)); m != 0;
                 m &= m - 1) {
                int i = flagged_slot(m);
                if (b->tophash[i] == top && keyeq(&b->keys[i], k)) {
                    out->b = b;
                    out->i = i;
                    return 0;
                }
            }
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
    if (gkey_store(&insb->keys[insi], k) < 0) {
        /* An empty overflow bucket left chained is harmless. */
        (void)fresh_ovf;
        return -1;
    }
    insb->tophash[insi] = top;
    insb->okeys[insi] = NULL;
    insb->elems[insi] = NULL;
    h->count++;
    out->b = insb;
    out->i = insi;
    return 1;
}

/* mapdelete: remove k, when present and (expect == NULL or its value is
 * expect).  Returns 1 and hands over the key object and value (owned) to
 * the caller, who releases them after unlocking; 0 when absent; 2 when
 * present with another value (nothing changed). */
static int
mapdelete(hmap *h, const ckey *k, PyObject *expect,
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
    if (expect != NULL && b->elems[i] != expect) {
        return 2;
    }
    *okey = b->okeys[i];
    *elem = b->elems[i];
    b->okeys[i] = b->elems[i] = NULL;
    gkey_release(&b->keys[i]);
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
        h->hash0 = fastrand();
    }
    return 1;
}

/* mapiterinit: start an iteration at a random bucket and offset. */
static void
mapiterinit(hmap *h, hiter *it)
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
    uint64_t r = fastrand();
    it->startBucket = r & bucketMask(h->B);
    it->offset = (uint8_t)((r >> h->B) & (BUCKETCNT - 1));
    it->bucket = it->startBucket;
}

/* Drop an iteration's table references. */
static void
hiter_finish(hiter *it)
{
    htab_release(it->btab);
    htab_release(it->tab);
    it->btab = it->tab = NULL;
    it->bptr = NULL;
    it->done = true;
}

/* mapiternext: the next entry, as borrowed key object and value (valid
 * while the lock is held).  Returns false at the end; then the iteration
 * holds no table any more, so the caller may finish it without the lock. */
static bool
mapiternext(hmap *h, hiter *it, PyObject **okey, PyObject **elem)
{
    if (it->done) {
        return false;
    }
    if (it->clearseq != h->clearseq) {
        hiter_finish(it);
        return false;
    }
    uintptr_t bucket = it->bucket;
    bmap *b = it->bptr;
    int i = it->i;
    uintptr_t checkBucket = it->checkBucket;

next:
    if (b == NULL) {
        if (bucket == it->startBucket && it->wrapped) {
            hiter_finish(it);
            return false;
        }
        htab_release(it->btab);
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
        gkey *k = &b->keys[offi];
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
            *elem = b->elems[offi];
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
            *elem = s.b->elems[s.i];
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
static void
hmap_detach(hmap *h, htab **cur, htab **old)
{
    *cur = h->buckets;
    *old = h->oldbuckets;
    h->buckets = h->oldbuckets = NULL;
    h->count = 0;
    h->B = 0;
    h->flags = 0;
    h->noverflow = 0;
    h->nevacuate = 0;
    h->hash0 = fastrand();
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
static void
hmap_reserve(hmap *h, Py_ssize_t hint)
{
    uint8_t B = hintB(hint);
    if (h->count != 0 || growing(h) || B <= h->B) {
        return;
    }
    htab_release(h->buckets);
    h->buckets = NULL;
    h->B = B;
    h->noverflow = 0;
}

/* ------------------------------------------------------------------ */
/* Locking (GIL held on entry and exit)                                */

/* The map lock is a word, taken free with one CAS and released with one
 * exchange: Drepper's second mutex ("Futexes Are Tricky"), with a
 * condition variable in place of the futex so that it builds everywhere.
 * 2 means someone may sleep on waitcv, so the releaser signals.  A pthread
 * mutex cost two library calls per operation (trylock, unlock), a few
 * percent of a get or set; the word costs two inlined atomic
 * instructions.  The lock is contended only by GIL-free bulk sections
 * and by a holder waiting for the GIL, so the sleeping side is rare. */
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

/* Take the map lock with the GIL: one try; when contended, wait without
 * the GIL (the holder may be a GIL-free bulk section, or be waiting for
 * the GIL itself). */
static inline void
map_lock(hmap *h)
{
    if (!lock_try(h)) {
        Py_BEGIN_ALLOW_THREADS
        lock_acquire(h);
        Py_END_ALLOW_THREADS
    }
}

/* Release the lock; with or without the GIL. */
static inline void
map_unlock(hmap *h)
{
    if (__atomic_exchange_n(&h->lock, 0, __ATOMIC_RELEASE) == 2) {
        pthread_mutex_lock(&h->waitmu);
        pthread_cond_signal(&h->waitcv);
        pthread_mutex_unlock(&h->waitmu);
    }
}

/* ------------------------------------------------------------------ */
/* Canonical keys (GIL held)                                           */

/* Keys of up to KENC_STACK bytes (with 16 of padding) are encoded on the
 * stack, with no malloc: an int is 9 bytes, an ASCII str 5 + its length. */
#define KENC_STACK 256

/* A canonical key being built, when encode_key's word-built fast paths
 * do not apply. */
typedef struct {
    uint8_t *p;               /* stack or heap (PyMem_RawMalloc) */
    size_t len;               /* bytes used */
    size_t cap;               /* bytes available */
    bool nan;                 /* a NaN was encoded */
    uint8_t stack[KENC_STACK];
} kenc;

static inline void
kenc_init(kenc *e)
{
    e->p = e->stack;
    e->len = 0;
    e->cap = KENC_STACK;
    e->nan = false;
}

static inline void
kenc_free(kenc *e)
{
    if (e->p != e->stack) {
        PyMem_RawFree(e->p);
    }
}

/* Make room for n more bytes (the rare case of kenc_room); the padding
 * of a key of the largest length still fits. */
static int
kenc_grow(kenc *e, size_t n)
{
    if (e->len + n > (size_t)GKEY_MAXLEN + 16) {
        PyErr_SetString(PyExc_OverflowError, "map key too large");
        return -1;
    }
    size_t cap = e->cap * 2;
    while (cap < e->len + n) {
        cap *= 2;
    }
    uint8_t *p;
    if (e->p == e->stack) {
        p = PyMem_RawMalloc(cap);
        if (p != NULL) {
            memcpy(p, e->stack, e->len);
        }
    }
    else {
        p = PyMem_RawRealloc(e->p, cap);
    }
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    e->p = p;
    e->cap = cap;
    return 0;
}

/* Room for n more bytes at e->p + e->len: 0, or -1 with an error set. */
static inline int
kenc_room(kenc *e, size_t n)
{
    return e->len + n <= e->cap ? 0 : kenc_grow(e, n);
}

static inline int
kenc_put(kenc *e, const void *src, size_t n)
{
    if (kenc_room(e, n) < 0) {
        return -1;
    }
    memcpy(e->p + e->len, src, n);
    e->len += n;
    return 0;
}

/* A tag and a u32 count or length. */
static inline int
kenc_hdr(kenc *e, uint8_t tag, size_t n)
{
    if (n > GKEY_MAXLEN) {
        PyErr_SetString(PyExc_OverflowError, "map key too large");
        return -1;
    }
    if (kenc_room(e, 5) < 0) {
        return -1;
    }
    uint32_t n32 = (uint32_t)n;
    e->p[e->len] = tag;
    memcpy(e->p + e->len + 1, &n32, 4);
    e->len += 5;
    return 0;
}

static inline int
kenc_tagged(kenc *e, uint8_t tag, const void *data, size_t n)
{
    if (kenc_hdr(e, tag, n) < 0) {
        return -1;
    }
    return kenc_put(e, data, n);
}

static inline int
kenc_int64(kenc *e, int64_t v)
{
    if (kenc_room(e, 9) < 0) {
        return -1;
    }
    e->p[e->len] = 'I';
    memcpy(e->p + e->len + 1, &v, 8);
    e->len += 9;
    return 0;
}

/* An int beyond int64: its hex form is unique per value. */
static int
kenc_bigint(kenc *e, PyObject *n)
{
    PyObject *s = PyNumber_ToBase(n, 16);
    if (s == NULL) {
        return -1;
    }
    Py_ssize_t len;
    const char *d = PyUnicode_AsUTF8AndSize(s, &len);
    int r = d == NULL ? -1 : kenc_tagged(e, 'L', d, (size_t)len);
    Py_DECREF(s);
    return r;
}

/* Any int (bool and subclasses included: encoded by value). */
static inline int
kenc_long(kenc *e, PyObject *k)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(k, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow) {
        return kenc_bigint(e, k);
    }
    return kenc_int64(e, (int64_t)v);
}

static int
kenc_double(kenc *e, double d)
{
    if (isnan(d)) {
        e->nan = true;
        return kenc_put(e, "n", 1);
    }
    if (isfinite(d) && d == floor(d)) {
        /* Integral: encode as the equal int, so 1.0 == 1 and -0.0 == 0. */
        if (d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
            return kenc_int64(e, (int64_t)d);
        }
        PyObject *n = PyLong_FromDouble(d);
        if (n == NULL) {
            return -1;
        }
        int r = kenc_bigint(e, n);
        Py_DECREF(n);
        return r;
    }
    uint8_t b[9];
    b[0] = 'F';
    memcpy(b + 1, &d, 8);
    return kenc_put(e, b, 9);
}

/* A str that is not all ASCII, as UTF-8 written straight from its code
 * points.  Surrogates are encoded like any other code point, which is
 * what the "surrogatepass" error handler does, so every str has exactly
 * one encoding and the str object is left alone (PyUnicode_AsUTF8 would
 * attach a UTF-8 copy to every non-ASCII key for the key's lifetime). */
static int
kenc_str_utf8(kenc *e, PyObject *s)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    size_t len = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        len += ch < 0x80 ? 1 : ch < 0x800 ? 2 : ch < 0x10000 ? 3 : 4;
    }
    if (kenc_hdr(e, 'S', len) < 0 || kenc_room(e, len) < 0) {
        return -1;
    }
    uint8_t *o = e->p + e->len;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        if (ch < 0x80) {
            *o++ = (uint8_t)ch;
        }
        else if (ch < 0x800) {
            *o++ = (uint8_t)(0xc0 | (ch >> 6));
            *o++ = (uint8_t)(0x80 | (ch & 0x3f));
        }
        else if (ch < 0x10000) {
            *o++ = (uint8_t)(0xe0 | (ch >> 12));
            *o++ = (uint8_t)(0x80 | ((ch >> 6) & 0x3f));
            *o++ = (uint8_t)(0x80 | (ch & 0x3f));
        }
        else {
            *o++ = (uint8_t)(0xf0 | (ch >> 18));
            *o++ = (uint8_t)(0x80 | ((ch >> 12) & 0x3f));
            *o++ = (uint8_t)(0x80 | ((ch >> 6) & 0x3f));
            *o++ = (uint8_t)(0x80 | (ch & 0x3f));
        }
    }
    e->len += len;
    return 0;
}

/* Any str: an ASCII one is its own UTF-8, copied from its data. */
static inline int
kenc_str(kenc *e, PyObject *s)
{
    if (PyUnicode_READY(s) < 0) {
        return -1;
    }
    if (PyUnicode_IS_ASCII(s)) {
        return kenc_tagged(e, 'S', PyUnicode_DATA(s),
                           (size_t)PyUnicode_GET_LENGTH(s));
    }
    return kenc_str_utf8(e, s);
}

static int kenc_other(kenc *e, PyObject *k);

/* Append k's canonical form.  Returns 0, or -1 with TypeError (unsupported
 * type), OverflowError, MemoryError or RecursionError set.  Exact int and
 * str, the common keys, are tested first and encoded inline. */
static inline int
kenc_key(kenc *e, PyObject *k)
{
    if (PyLong_CheckExact(k)) {
        return kenc_long(e, k);
    }
    if (PyUnicode_CheckExact(k)) {
        return kenc_str(e, k);
    }
    return kenc_other(e, k);
}

/* kenc_key for everything but exact int and str. */
static int
kenc_other(kenc *e, PyObject *k)
{
    if (PyLong_Check(k)) {
        return kenc_long(e, k);
    }
    if (PyUnicode_Check(k)) {
        return kenc_str(e, k);
    }
    if (k == Py_None) {
        return kenc_put(e, "N", 1);
    }
    if (PyFloat_Check(k)) {
        return kenc_double(e, PyFloat_AS_DOUBLE(k));
    }
    if (PyBytes_Check(k)) {
        return kenc_tagged(e, 'B', PyBytes_AS_STRING(k),
                           (size_t)PyBytes_GET_SIZE(k));
    }
    if (PyTuple_Check(k)) {
        Py_ssize_t n = PyTuple_GET_SIZE(k);
        if (kenc_hdr(e, 'T', (size_t)n) < 0) {
            return -1;
        }
        if (Py_EnterRecursiveCall(" while encoding a map key")) {
            return -1;
        }
        int r = 0;
        for (Py_ssize_t i = 0; i < n && r == 0; i++) {
            r = kenc_key(e, PyTuple_GET_ITEM(k, i));
        }
        Py_LeaveRecursiveCall();
        return r;
    }
    PyErr_Format(PyExc_TypeError, "unsupported map key type: '%.200s'",
                 Py_TYPE(k)->tp_name);
    return -1;
}

/* An int in int64 range as a ckey: 'I' and 8 bytes, built as words. */
static inline void
ckey_int64(ckey *c, int64_t v)
{
    c->w[0] = 'I' | (uint64_t)v << 8;
    c->w[1] = (uint64_t)v >> 56;
    c->w[2] = c->w[3] = 0;
    c->len = 9;
    c->p = NULL;
    c->kb = NULL;
}

/* An ASCII str of n <= GKEY_INLINE - 5 characters at d as a ckey: 'S',
 * the u32 length and the characters, built as words from reads inside
 * d[0..n) (the same bytes kenc_str writes). */
static inline void
ckey_short_ascii(ckey *c, const uint8_t *d, size_t n)
{
    uint64_t d0, d1 = 0;
    if (n >= 8) {
        d0 = rd64(d);
        if (n > 8) {
            d1 = rd64(d + n - 8) >> (8 * (16 - n));
        }
    }
    else {
        d0 = rdtail(d, n);
    }
    c->w[0] = 'S' | (uint64_t)n << 8 | d0 << 40;
    c->w[1] = d0 >> 24 | d1 << 40;
    c->w[2] = d1 >> 24;
    c->w[3] = 0;
    c->len = (uint32_t)(5 + n);
    c->p = NULL;
    c->kb = NULL;
}

/* The key e built as a ckey, padded; -1 with an error set when it is too
 * long, or when there is no memory for the padding. */
static int
kenc_finish(kenc *e, ckey *c)
{
    if (e->len > GKEY_MAXLEN) {
        PyErr_SetString(PyExc_OverflowError, "map key too large");
        return -1;
    }
    c->len = (uint32_t)e->len | (e->nan ? GKEY_NAN : 0);
    c->kb = NULL;
    if (e->len <= GKEY_INLINE) {
        memset(c->w, 0, sizeof c->w);
        memcpy(c->w, e->p, e->len);
        c->p = NULL;
        return 0;
    }
    if (kenc_room(e, 16) < 0) {
        return -1;
    }
    memset(e->p + e->len, 0, 16);
    c->p = e->p;
    return 0;
}

/* Encode k for a lookup or a single insert.  On success c->p, when not
 * NULL, points into e, which the caller frees with kenc_free (safe on
 * every path).  The common keys, an exact int of one digit and a short
 * ASCII str, are built straight as words (no kenc, no store-forwarding
 * stall); the bytes are those kenc_key writes. */
static inline int
encode_key(kenc *e, PyObject *k, ckey *c)
{
    e->p = e->stack;
    if (PyLong_CheckExact(k)) {
        int64_t v;
        if (gr_pystate_small_int(k, &v)) {
            ckey_int64(c, v);
            return 0;
        }
    }
    else if (PyUnicode_CheckExact(k) && PyUnicode_IS_COMPACT_ASCII(k) &&
             PyUnicode_GET_LENGTH(k) <= GKEY_INLINE - 5) {
        ckey_short_ascii(c, PyUnicode_DATA(k),
                         (size_t)PyUnicode_GET_LENGTH(k));
        return 0;
    }
    kenc_init(e);
    if (kenc_key(e, k) < 0 || kenc_finish(e, c) < 0) {
        kenc_free(e);
        return -1;
    }
    return 0;
}

/* KeyError(k), with k wrapped so a tuple key is not taken as args. */
static void
set_key_error(PyObject *k)
{
    PyObject *t = PyTuple_Pack(1, k);
    if (t != NULL) {
        PyErr_SetObject(PyExc_KeyError, t);
        Py_DECREF(t);
    }
}

/* ------------------------------------------------------------------ */
/* Single operations (GIL held; each takes and drops the lock once)    */

/* Look k up; returns a new reference to its value, or NULL (no error set)
 * when absent.  *err is set when k could not be encoded. */
static PyObject *
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
        v = s.b->elems[s.i];
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
 * reference: the value replaced, or the value kept), -1 on error. */
static int
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
    int r = mapassign(h, &c, &s);
    if (r == 1) {
        Py_INCREF(k);
        Py_INCREF(v);
        s.b->okeys[s.i] = k;
        s.b->elems[s.i] = v;
    }
    else if (r == 0) {
        if (mode == STORE_ALWAYS) {
            /* The replaced value is released by the caller, unlocked. */
            *prev = s.b->elems[s.i];
            Py_INCREF(v);
            s.b->elems[s.i] = v;
        }
        else {
            *prev = s.b->elems[s.i];
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
    int r = mapdelete(h, &c, expect, okey, elem);
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
        hmap_reserve(h, ub->hint);
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
        int r = mapassign(h, &c, &s);
        if (r < 0) {
            return -1;
        }
        u->kb = c.kb;       /* NULL when the map took it */
        if (r == 1) {
            s.b->okeys[s.i] = u->okey;
            s.b->elems[s.i] = u->val;
            u->okey = NULL;
            u->val = NULL;
        }
        else {
            /* dict keeps the first key object; the new one is dropped */
            PyObject *old = s.b->elems[s.i];
            s.b->elems[s.i] = u->val;
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
        map_unlock(h);
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
        u->kb = keybuf_new(c.p, len);
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
        mapiterinit(h, &it);
        Py_ssize_t got = 0;
        PyObject *k, *v;
        while (got < *n && mapiternext(h, &it, &k, &v)) {
            Py_INCREF(k);
            Py_INCREF(v);
            arr[2 * got] = k;
            arr[2 * got + 1] = v;
            got++;
        }
        map_unlock(h);
        hiter_finish(&it);
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

static void
map_clear_impl(hmap *h)
{
    htab *cur, *old;
    map_lock(h);
    hmap_detach(h, &cur, &old);
    map_unlock(h);
    /* Nobody references the detached tables' slots now: drain them with
     * the GIL (the DECREFs can run __del__, which may use this map). */
    htab *ts[2] = {cur, old};
    for (int j = 0; j < 2; j++) {
        if (ts[j] != NULL) {
            htab_drain(ts[j], NULL);
            htab_release(ts[j]);
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
    h->hash0 = fastrand();
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
        set_key_error(k);
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
        set_key_error(k);
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
        set_key_error(args[0]);
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
    map_clear_impl(h);
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
        PyObject *v = s.b->elems[s.i];
        if (v == expected) {
            Py_INCREF(newv);
            s.b->elems[s.i] = newv;
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
        int r = mapassign(h, &c, &s);
        if (r == 1) {
            /* New key: 0 + delta. */
            Py_INCREF(k);
            Py_INCREF(first);
            s.b->okeys[s.i] = k;
            s.b->elems[s.i] = first;
            result = Py_NewRef(first);
        }
        else if (r == 0 && fast && PyLong_CheckExact(s.b->elems[s.i])) {
            PyObject *nv = PyNumber_Add(s.b->elems[s.i], delta);
            if (nv != NULL) {
                old = s.b->elems[s.i];
                s.b->elems[s.i] = nv;
                result = Py_NewRef(nv);
            }
        }
        else if (r == 0) {
            cur = Py_NewRef(s.b->elems[s.i]);
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
                    Py_VISIT(b->elems[i]);
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
    map_clear_impl(h);
    return 0;
}

static void
map_dealloc(hmap *h)
{
    PyTypeObject *tp = Py_TYPE(h);
    PyObject_GC_UnTrack(h);
    Py_TRASHCAN_BEGIN(h, map_dealloc)
    map_clear_impl(h);
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
    mapiterobject *it = PyObject_GC_New(mapiterobject,
                                        gr_globals.map.Iter);
    if (it == NULL) {
        return NULL;
    }
    it->map = (hmap *)Py_NewRef((PyObject *)h);
    it->kind = kind;
    map_lock(h);
    mapiterinit(h, &it->it);
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
    bool more = mapiternext(h, &it->it, &k, &v);
    if (more) {
        Py_INCREF(k);
        Py_INCREF(v);
    }
    map_unlock(h);
    if (!more) {
        hiter_finish(&it->it);
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
        hiter_finish(&it->it);
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
     "update(self, other=(), /, **kw)\n--\n\n"
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
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
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
    .name = "goroutine._core.map_iterator",
    .basicsize = sizeof(mapiterobject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = iter_slots,
};

#define VIEW_SPEC(var, cname, contains)                                  \
    static PyType_Slot var##_slots[] = {                                 \
        {Py_tp_iter, view_iter}, {Py_tp_repr, view_repr},                \
        {Py_tp_traverse, view_traverse}, {Py_tp_dealloc, view_dealloc},  \
        {Py_mp_length, view_len}, {Py_sq_contains, contains}, {0, NULL}};\
    static PyType_Spec var##_spec = {                                    \
        .name = "goroutine._core." cname,                                \
        .basicsize = sizeof(mapviewobject),                              \
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,                \
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
