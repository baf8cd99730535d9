/*
 * gomap.h: goroutine.Map, the hash map of Go's runtime (hmap/bmap), as a
 * thread-safe Python mapping whose hashing and probing never touch a Python
 * object, so that they can run without the GIL.
 *
 * Files
 * -----
 * gomap.h        this essay; the constants and structs; the hashing, the
 *                GIL-free key helpers and the lookup (mapaccess) every part
 *                uses (static inline); the fast paths of encode_key,
 *                inlined into each operation.
 * gomap_table.c  the hash table: buckets, growth, evacuation, iteration
 *                (Go's mapassign/mapdelete/mapiternext).  Never
 *                touches a Python object's contents and never needs the
 *                GIL; called with the map lock held.
 * gomap_key.c    the canonical key encoding of any supported Python key
 *                (GIL held), behind encode_key's fast paths.
 * gomap_type.c   the Python type: the map lock and its GIL protocol, the
 *                operations, update()'s GIL-free batches, snapshots, the
 *                views and iterators, GC support and the type specs.
 *
 * Layout (the seed's chapter 7, made precise)
 * -------------------------------------------
 * An hmap owns 2^B buckets (one htab).  A bucket (bmap) holds 8 slots in
 * six 64-byte cache lines: line 0 has the 8 tophash bytes, the overflow
 * pointer and the original key objects (okeys, which only iteration,
 * insertion and deletion read); then come the 8 slots of 32 bytes, each a
 * canonical key and its value, two to a line and never across a line.  So
 * a lookup that hits reads two lines: tophash, then its slot.  Go's classic
 * layout (all keys, then all values) made it three (tophash, key, value,
 * and a key of 24 bytes could straddle two lines), which a big map pays
 * in cache misses: measured with callgrind's cache simulation on 200,000
 * gets of 200,000 shuffled int keys, D1 misses fell from 700,428 to
 * 512,560 (3.5 to 2.6 a get; one of those is the key object itself, which
 * a dict reads too).  The price is 48 bytes of padding: 384 bytes a
 * bucket instead of 336.  Go's Swiss-table map (1.24) likewise puts a
 * slot's key and value together.  A key's hash picks its bucket with its low B bits and its
 * tophash byte with its high 8 bits; a probe compares the tophash byte
 * before it compares a key.  A full bucket chains overflow buckets.
 *
 * Keys are stored in a canonical byte form (see "Keys" below) and compared
 * as bytes: a short key as the three words of its slot, a longer one with
 * memcmp.  The hash is our own multiply-fold hash of those bytes with a
 * per-map seed (hash0), except for a str key of more than GKEY_INLINE
 * canonical bytes (see "Hashing").  The original key object is kept alongside, so
 * iteration yields the key object that was inserted first, as dict does
 * (m[1] = a; m[1.0] = b; list(m) == [1]).
 *
 * A table of 2 MiB or more is a mapping of its own, 2 MiB aligned and
 * advised MADV_HUGEPAGE (htab_new): a million keys' 96 MiB on 4 KiB pages
 * cost a TLB miss and page walk on nearly every get.
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
 * its evacuated copy (copy() encodes its keys anew: see update()).
 *
 * Hashing
 * -------
 * Every key's hash is seeded per map, as Go's are: an attacker who does
 * not know hash0 cannot pick keys that share a bucket, and hash0 is
 * renewed when the map empties.  Any function of the key works as long as
 * equal keys hash alike and it can be recomputed without the GIL (by
 * evacuate and by iterators) from what a slot holds.  A short key (up to
 * GKEY_INLINE bytes: ints, str of up to 15 UTF-8 bytes) hashes its
 * canonical words: two multiplies on words already in registers.  A
 * longer str key instead mixes CPython's own str hash (xhash) with the
 * seed: the str object caches that hash, so a lookup with a str that has
 * been hashed before (any str used as a dict key or attribute name) does
 * not rehash its characters, and its keybuf keeps xhash for the GIL-free
 * rehashes.  It is str's hash (unicode_hash), never a subclass's
 * __hash__, so keys stay compared by value.  DoS resistance is kept: two
 * keys share a bucket for every seed only if their 64-bit CPython hashes
 * are equal, which SipHash with the process's random key makes as hard to
 * arrange as with our own hash (and under PYTHONHASHSEED=0, a full 64-bit
 * collision per key pair is still a birthday search of 2^32, per pair).
 * Measured with callgrind, a get of 2,000 shuffled 40-character keys went
 * from 329 to 327 instructions: the characters' copy into the canonical
 * form and the memcmp are the cost left; the hash saved grows with the
 * key's length (16 bytes per multiply).
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
 * The single-owner fast path: while no GIL-free section runs on the map
 * (bulk == 0), every critical section is run by a GIL holder from start
 * to end, so the GIL alone excludes them and map_lock/map_unlock do not
 * touch the lock word at all (see map_lock in gomap_type.c).  The word is
 * taken only while bulk > 0, and by the bulk sections themselves.
 *
 * Order: the lock is never waited for while holding the GIL.  It is tried
 * first (uncontended: one CAS on a word); when busy, the GIL is released
 * around the wait.  The other way round is allowed: a thread may hold the
 * lock while it waits for the GIL (after a contended wait), because the
 * GIL holder never blocks on the lock.  This is CPython's own recipe for
 * the lock of a buffered io object.
 *
 * Without the GIL run, from BULK_MIN entries: the inserts of update()
 * batches (bulk); copy()'s, since copy() is a snapshot taken under the
 * lock and an update() of a new map; and clear()'s walk of the tables it
 * detached, which moves their objects into an array whose DECREFs follow
 * with the GIL (clear from GC's tp_clear or dealloc keeps the GIL).  While
 * a bulk section of update() runs on a map, its pointers change under
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
 * on store forwarding; no lock instruction (the GIL excludes); memhash, two multiplies for a
 * key of up to 16 bytes; the bucket's 8 tophash bytes matched as one word
 * (SWAR), and the key compared as three words.
 * Measured against a dict in one process on map_get_set's loop
 * (docs/map.md): 1.9x before this path was built, 1.3-1.4x after.  In a
 * profile of that loop the map's code is half the time where dict's is a
 * third; the largest items left are mapassign's first read of the bucket
 * (336 bytes, so a table of 2000 keys does not stay in L1), the lock's two
 * atomic instructions and the generic PyObject_GetItem/SetItem (dict has
 * specialized bytecodes).  With 16 keys, all in L1, the ratio is the same:
 * it is instructions more than cache misses.
 *
 * Issue 16 then took the lock word out of the common case (the
 * single-owner fast path above): a CAS and an exchange cost 15-18 ns
 * together on this machine's EPYC in a loop of nothing else, and in a
 * get of 2,000 shuffled int keys 3 ns of ~31 (benchmarks.map_ops, CPU
 * time, best of 5 runs alternating with the commit before).  An earlier
 * attempt at the same rule had been rejected as inside the noise of the
 * wall clock; the thread CPU clock resolves it.
 */
#ifndef GR_GOMAP_H
#define GR_GOMAP_H

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
#error "goroutine: the map assumes a little-endian target"
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
 * enough work).  copy() inserts through update(), so the same threshold
 * holds for it; clear() walks a map of BULK_MIN entries or more without
 * the GIL. */
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
    uint64_t xhash;           /* a str key's CPython hash (see
                                 ckey_hash); 0 for other keys */
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

/* A slot's key and value: what a lookup reads after the tophash. */
typedef struct {
    gkey key;                 /* canonical key */
    PyObject *elem;           /* value (owned when live) */
} bslot;

/* A bucket: 8 slots, in six cache lines (see "Layout" for why).  Line 0
 * holds the tophash bytes, the overflow pointer and most key objects;
 * each 32-byte slot lies inside one line, two to a line. */
typedef struct bmap {
    _Alignas(64) uint8_t tophash[BUCKETCNT];  /* hash>>56 per slot, or a
                                                 mark */
    struct bmap *overflow;        /* next bucket of the chain, or NULL */
    PyObject *okeys[BUCKETCNT];   /* key objects as first inserted (owned
                                     when live); read only by iteration,
                                     insertion and deletion */
    _Alignas(32) bslot slots[BUCKETCNT];
} bmap;

/* A bucket array: the unit iterators keep alive. */
typedef struct {
    size_t refs;              /* atomic: the hmap (as buckets or
                                 oldbuckets) plus iterators */
    void *mem;                /* the allocation this lies in (aligned up
                                 to 64 bytes within it) */
    size_t maplen;            /* mem's length when it is a mapping of its
                                 own (a big table: see htab_new); 0 when
                                 it came from PyMem_RawCalloc */
    uint8_t B;                /* log2 of the number of buckets */
    bmap buckets[];           /* 2^B buckets, 64-byte aligned; overflow
                                 ones are separate allocations, freed
                                 with the table */
} htab;

/* The map object. */
typedef struct {
    PyObject_HEAD
    int lock;                 /* atomic: 0 free, 1 held, 2 held and maybe
                                 waited for (see lock_try).  Guards
                                 all fields below but bulk while
                                 bulk > 0 (the GIL does otherwise); never
                                 call
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
    uint64_t xhash;           /* a long str key's CPython hash (see
                                 ckey_hash); unset for other keys */
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
uint64_t gr_gmap_fastrand(void);

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
static inline void
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
static inline void
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
        c->xhash = kb->xhash;
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

/* A keybuf holding a copy of the n bytes at p, padded, and xhash.  NULL when out of
 * memory (no error set: callers may not hold the GIL). */
static inline keybuf *
keybuf_new(const uint8_t *p, uint32_t n, uint64_t xhash)
{
    size_t padded = ((size_t)n + 15) & ~(size_t)15;
    keybuf *kb = PyMem_RawMalloc(sizeof(keybuf) + padded);
    if (kb != NULL) {
        kb->refs = 1;
        kb->xhash = xhash;
        memcpy(kb->data, p, n);
        memset(kb->data + n, 0, padded - n);
    }
    return kb;
}

/* Is c a str key of more than GKEY_INLINE canonical bytes?  Such a key
 * is hashed from its str's CPython hash (xhash), which the str object
 * caches, instead of from its bytes: see "Hashing" in the header. */
static inline bool
ckey_strhashed(const ckey *c)
{
    return ckey_len(c) > GKEY_INLINE && c->p[0] == 'S';
}

/* memhash of a short key's words w (n <= GKEY_INLINE bytes, zero padded
 * to 32): the same value, unrolled, since n is known to need one block
 * or two. */
static inline uint64_t
memhash_short(const uint64_t *w, uint32_t n, uint64_t seed)
{
    uint64_t h = seed ^ (uint64_t)n;
    h = mix(w[0] ^ h ^ H2, w[1] ^ rotl(h, 32) ^ H3);
    if (n > 16) {
        h = mix(w[2] ^ h ^ H2, w[3] ^ rotl(h, 32) ^ H3);
    }
    return mix(h ^ H4, h ^ H0) ^ h;
}

/* The map's hash of c with the map's seed. */
static inline uint64_t
ckey_hash(const ckey *c, uint64_t seed)
{
    uint32_t n = ckey_len(c);
    if (n <= GKEY_INLINE) {
        return memhash_short(c->w, n, seed);
    }
    if (c->p[0] == 'S') {       /* ckey_strhashed */
        uint64_t h = seed ^ H1;
        h = mix(c->xhash ^ h ^ H2, rotl(h, 32) ^ H3);
        return mix(h ^ H4, h ^ H0) ^ h;
    }
    return memhash(c->p, n, seed);
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
static inline int
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
        kb = keybuf_new(c->p, len, ckey_strhashed(c) ? c->xhash : 0);
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
/* Table geometry (GIL-free)                                           */

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

/* ------------------------------------------------------------------ */
/* Probing (GIL-free, map lock held or GIL as map_lock says)           */

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

/* The slot of bucket b (whose tophash bytes are w) holding k, whose
 * tophash is top; -1 when none does.  Every slot whose tophash is top is
 * a candidate (empty marks never equal a live tophash).  The one probe
 * of a bucket: chain_find and mapassign both use it. */
static inline __attribute__((always_inline)) int
bucket_find(const bmap *b, uint64_t w, uint8_t top, const ckey *k)
{
    for (uint64_t m = zerobytes(w ^ (top * BYTES_01)); m != 0; m &= m - 1) {
        int i = flagged_slot(m);
        if (b->tophash[i] == top && keyeq(&b->slots[i].key, k)) {
            return i;
        }
    }
    return -1;
}

/* Find k, whose tophash is top, in the chain starting at b.  An
 * emptyRest ends the chain, so this finds what Go's slot by slot scan
 * finds. */
static inline __attribute__((always_inline)) bool
chain_find(bmap *b, uint8_t top, const ckey *k, slotref *out)
{
    for (; b != NULL; b = b->overflow) {
        uint64_t w = tophashes(b);
        int i = bucket_find(b, w, top, k);
        if (i >= 0) {
            out->b = b;
            out->i = i;
            return true;
        }
        if (zerobytes(w) != 0) {
            return false;       /* an emptyRest */
        }
    }
    return false;
}

/* mapaccess: find key k.  Returns true and its slot, or false.  Map
 * lock held (or the GIL, see map_lock).  Inline, so that a get keeps the
 * key it built in registers (issue 16: an out-of-line call spilled the
 * ckey to the stack and reloaded it word by word). */
static inline __attribute__((always_inline)) bool
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

/* ------------------------------------------------------------------ */
/* Canonical keys being built (GIL held)                               */

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

int gr_encode_key_slow(kenc *e, PyObject *k, ckey *c);

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
    return gr_encode_key_slow(e, k, c);
}

/* ------------------------------------------------------------------ */
/* Across the files (contracts at the definitions)                    */

/* gomap_table.c: the hash table, GIL-free, map lock held but where said. */
size_t gr_htab_drain(htab *t, PyObject **out);
void gr_htab_release(htab *t);
int gr_mapassign(hmap *h, ckey *k, slotref *out);
int gr_mapdelete(hmap *h, const ckey *k, PyObject *expect,
                 PyObject **okey, PyObject **elem);
void gr_mapiterinit(hmap *h, hiter *it);
void gr_hiter_finish(hiter *it);
bool gr_mapiternext(hmap *h, hiter *it, PyObject **okey,
                    PyObject **elem);
void gr_hmap_detach(hmap *h, htab **cur, htab **old);
void gr_hmap_reserve(hmap *h, Py_ssize_t hint);

/* gomap_key.c */
void gr_set_key_error(PyObject *k);

#endif /* GR_GOMAP_H */
