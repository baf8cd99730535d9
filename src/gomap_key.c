/*
 * gomap_key.c: the canonical byte form of goroutine.Map's keys (see "Keys"
 * in gomap.h), built from None, bool, int, float, str, bytes and tuples of
 * them with the GIL held, without calling any Python code.  The common
 * short int and ASCII str keys never get here: encode_key (gomap.h) builds
 * them as words in the caller.
 */
#include "gomap.h"

/* ------------------------------------------------------------------ */
/* Canonical keys (GIL held)                                           */

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

/* KeyError(k), with k wrapped so a tuple key is not taken as args. */
void
gr_set_key_error(PyObject *k)
{
    PyObject *t = PyTuple_Pack(1, k);
    if (t != NULL) {
        PyErr_SetObject(PyExc_KeyError, t);
        Py_DECREF(t);
    }
}

/* encode_key's general path (gomap.h): any key the fast paths do not
 * take, built in e.  0, or -1 with an error set and e freed. */
int
gr_encode_key_slow(kenc *e, PyObject *k, ckey *c)
{
    kenc_init(e);
    if (kenc_key(e, k) < 0 || kenc_finish(e, c) < 0) {
        kenc_free(e);
        return -1;
    }
    if (ckey_strhashed(c)) {
        /* str's own hash, never a subclass's __hash__ (keys are compared
         * by value): unicode_hash, which reads the hash cached in the
         * object and computes it only the first time. */
        Py_hash_t x = PyUnicode_Type.tp_hash(k);
        if (x == -1 && PyErr_Occurred()) {
            kenc_free(e);
            return -1;
        }
        c->xhash = (uint64_t)x;
    }
    return 0;
}
