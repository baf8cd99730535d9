/*
 * interp.c: worker interpreters with their own GIL (PEP 684, 3.12+),
 * the C half of goroutine.interp (docs/design.md, "Worker interpreters").
 *
 * A worker goroutine is an ordinary G (sched.c) whose body is
 * _core._interp_run(worker, payload).  That call makes a thread state in
 * the worker (a "crossing", fitted to the G's C stack), detaches the G's
 * main thread state (dropping the main GIL: to sysmon the G is now in a
 * GIL-releasing call), attaches the worker one (taking the worker's GIL)
 * and runs goroutine_worker._run(payload) there.  When the worker code
 * needs the runtime (a channel operation), goroutine_worker calls
 * _xcall(payload), which crosses back the other way, calls the main
 * side's serve callback (which may park the G the usual way: the G's
 * main thread state is attached, nothing else is), and crosses in again,
 * possibly on another M.  Only bytes cross, copied through malloc'd
 * buffers: no Python object is ever seen by two interpreters.
 *
 * Invariants:
 *   - A crossing's worker thread state is attached only on the OS thread
 *     that last detached the G's main thread state, and never both at
 *     once: the G holds at most one GIL.
 *   - c->where == IN_MAIN implies c->w is detached and is touched by
 *     nobody but _interp_abandon (exit), which marks c abandoned; an
 *     abandoned crossing's G never attaches c->w again (it sleeps for
 *     good: the process is ending).
 *   - A worker is ended (Py_EndInterpreter) only with no crossing linked:
 *     goroutine/interp.py counts its goroutines and ends it after the
 *     last; at exit the abandoned ones are deleted first.
 *
 * Locks: worker.mu guards the crossing list and each crossing's where and
 * abandoned fields; a leaf.  Never take a GIL while holding it.
 * worker.kmu is held while the worker's keeper thread state is attached
 * (interp_end, interp_stop, interp_frames): taken with no GIL held, then
 * the worker's GIL is taken under it; mu may be taken inside it.
 *
 * GIL: the _interp_* functions are called with the main GIL held; _xcall
 * with the worker's.  Everything between a detach and an attach below
 * touches no Python object.
 */
#include "core.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if PY_VERSION_HEX >= 0x030C0000
#define GR_HAVE_WORKERS 1
#endif

#ifdef GR_HAVE_WORKERS

enum { IN_WORKER, IN_MAIN };

typedef struct crossing {
    struct crossing *next;      /* worker.crossings, under worker.mu */
    struct crossing *prev;
    struct worker *wk;          /* the worker it runs in */
    PyThreadState *w;           /* its thread state in the worker */
    PyThreadState *mts;         /* the G's (or thread's) main one */
    int where;                  /* IN_WORKER / IN_MAIN, under wk->mu */
    uint64_t goid;              /* its goroutine's, for runtime.stack() */
    bool abandoned;             /* exit deleted w: never attach it again */
} crossing;

typedef struct worker {
    PyInterpreterState *interp; /* own GIL; NULL once ended */
    int64_t id;                 /* PyInterpreterState_GetID */
    unsigned forkgen;           /* gr_forkgen it was made in */
    pthread_mutex_t mu;         /* guards crossings; a leaf */
    crossing *crossings;        /* goroutines inside it (running/parked) */
    PyThreadState *keeper;      /* its first thread state, detached, kept
                                   until the end: see interp_new */
    pthread_mutex_t kmu;        /* held while keeper is attached (end,
                                   stop, frames: one thread at a time);
                                   taken with no GIL held */
} worker;

/* The main side's serve(payload) -> bytes (goroutine/interp.py); a main
 * interpreter object, touched with the main GIL only. */
static PyObject *serve_cb;

static const char CAPSULE[] = "goroutine._core.worker";
static const char XKEY[] = "goroutine.crossing";

/* ---- bytes that cross ------------------------------------------------ */

typedef struct {
    char *buf;
    Py_ssize_t len;
} blob;

/* Copy a bytes object out of its interpreter.  GIL of its interpreter
 * held; -1 with an exception set. */
static int
blob_from(blob *b, PyObject *bytes)
{
    if (!PyBytes_Check(bytes)) {
        PyErr_Format(PyExc_TypeError, "goroutine.interp: payload must be "
                     "bytes, not %.200s", Py_TYPE(bytes)->tp_name);
        return -1;
    }
    b->len = PyBytes_GET_SIZE(bytes);
    b->buf = malloc(b->len > 0 ? (size_t)b->len : 1);
    if (b->buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(b->buf, PyBytes_AS_STRING(bytes), (size_t)b->len);
    return 0;
}

/* A bytes object of the current interpreter; frees the blob. */
static PyObject *
blob_take(blob *b)
{
    PyObject *r = PyBytes_FromStringAndSize(b->buf, b->len);
    free(b->buf);
    b->buf = NULL;
    return r;
}

/* The current exception as an error blob: b"E" + its text, so the other
 * side raises RuntimeError with it.  Clears the exception. */
static void
blob_error(blob *b, const char *where)
{
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *s = exc != NULL ? PyObject_Str(exc) : NULL;
    const char *txt = s != NULL ? PyUnicode_AsUTF8(s) : NULL;
    if (txt == NULL) {
        PyErr_Clear();
        txt = "(unprintable error)";
    }
    const char *tn = exc != NULL ? Py_TYPE(exc)->tp_name : "Error";
    size_t n = strlen(where) + strlen(tn) + strlen(txt) + 8;
    b->buf = malloc(n);
    if (b->buf != NULL) {
        b->len = snprintf(b->buf, n, "E%s: %s: %s", where, tn, txt);
    }
    else {
        b->len = 0;
    }
    Py_XDECREF(s);
    Py_XDECREF(exc);
}

static void
crossing_link(crossing *c)
{
    worker *wk = c->wk;
    pthread_mutex_lock(&wk->mu);
    c->prev = NULL;
    c->next = wk->crossings;
    if (c->next != NULL) {
        c->next->prev = c;
    }
    wk->crossings = c;
    pthread_mutex_unlock(&wk->mu);
}

/* Caller holds wk->mu. */
static void
crossing_unlink_locked(crossing *c)
{
    worker *wk = c->wk;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    }
    else {
        wk->crossings = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->next = c->prev = NULL;
}

/* ---- the worker side ------------------------------------------------- */

/* goroutine_worker._xcall(payload) -> bytes: run serve(payload) in the
 * main interpreter on this goroutine and bring its answer back.  Worker
 * GIL held on entry and exit (possibly on another OS thread). */
static PyObject *
worker_xcall(PyObject *self, PyObject *payload)
{
    PyObject *d = PyThreadState_GetDict();
    PyObject *key = d != NULL ? PyDict_GetItemString(d, XKEY) : NULL;
    if (key == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "goroutine.interp: channels, WaitGroups and "
                        "Contexts of the main interpreter can be used only "
                        "in a goroutine started by Pool.go");
        return NULL;
    }
    crossing *c = PyLong_AsVoidPtr(key);
    if (c == NULL) {
        return NULL;
    }
    blob in, out = {NULL, 0};
    if (blob_from(&in, payload) < 0) {
        return NULL;
    }
    worker *wk = c->wk;
    pthread_mutex_lock(&wk->mu);
    c->where = IN_MAIN;
    pthread_mutex_unlock(&wk->mu);
    PyEval_SaveThread();
    PyEval_RestoreThread(c->mts);

    /* Main interpreter, as the goroutine itself: serve may park it. */
    PyObject *arg = blob_take(&in);
    PyObject *r = NULL;
    if (arg != NULL && serve_cb != NULL) {
        r = PyObject_CallOneArg(serve_cb, arg);
    }
    else if (arg != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "goroutine.interp: not set up");
    }
    Py_XDECREF(arg);
    if (r == NULL || blob_from(&out, r) < 0) {
        blob_error(&out, "goroutine.interp: in the main interpreter");
    }
    Py_XDECREF(r);

    pthread_mutex_lock(&wk->mu);
    bool gone = c->abandoned;
    if (!gone) {
        c->where = IN_WORKER;
    }
    pthread_mutex_unlock(&wk->mu);
    if (gone) {
        /* Exit deleted our worker thread state: there is nothing to go
         * back to.  Sleep without the GIL until the process ends. */
        free(out.buf);
        PyEval_SaveThread();
        for (;;) {
            pause();
        }
    }
    PyEval_SaveThread();
    gr_pystate_foreign_attach(c->w);
    if (out.buf == NULL) {
        return PyErr_NoMemory();
    }
    if (out.len > 0 && out.buf[0] == 'E') {
        PyErr_Format(PyExc_RuntimeError, "%.*s", (int)(out.len - 1),
                     out.buf + 1);
        free(out.buf);
        return NULL;
    }
    return blob_take(&out);
}

static PyMethodDef xcall_def = {
    "_xcall", worker_xcall, METH_O,
    "_xcall(payload) -> bytes: serve payload in the main interpreter."};

/* Run in a new worker, its GIL held: make sys.modules["goroutine_worker"]
 * from goroutine/_worker.py (path), with _xcall in it, and copy the main
 * interpreter's sys.path (pathlist: '\0'-separated).  0 or -1. */
static const char BOOT[] =
    "import sys, types\n"
    "sys.path[:] = _paths\n"
    "m = types.ModuleType('goroutine_worker')\n"
    "m.__file__ = _path\n"
    "m._xcall = _xcall\n"
    "sys.modules['goroutine_worker'] = m\n"
    "with open(_path, encoding='utf-8') as f:\n"
    "    exec(compile(f.read(), _path, 'exec'), m.__dict__)\n";

static int
worker_boot(const char *path, const char *paths, Py_ssize_t npaths)
{
    int rc = -1;
    PyObject *g = PyDict_New(), *fn = NULL, *pl = NULL, *r = NULL;
    if (g == NULL) {
        goto done;
    }
    fn = PyCFunction_New(&xcall_def, NULL);
    pl = PyList_New(0);
    if (fn == NULL || pl == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < npaths;) {
        size_t n = strlen(paths + i);
        PyObject *s = PyUnicode_DecodeFSDefaultAndSize(paths + i,
                                                       (Py_ssize_t)n);
        if (s == NULL || PyList_Append(pl, s) < 0) {
            Py_XDECREF(s);
            goto done;
        }
        Py_DECREF(s);
        i += (Py_ssize_t)n + 1;
    }
    PyObject *p = PyUnicode_DecodeFSDefault(path);
    if (p == NULL || PyDict_SetItemString(g, "_path", p) < 0) {
        Py_XDECREF(p);
        goto done;
    }
    Py_DECREF(p);
    if (PyDict_SetItemString(g, "_xcall", fn) < 0 ||
        PyDict_SetItemString(g, "_paths", pl) < 0 ||
        PyDict_SetItemString(g, "__builtins__", PyEval_GetBuiltins()) < 0) {
        goto done;
    }
    r = PyRun_String(BOOT, Py_file_input, g, g);
    rc = r == NULL ? -1 : 0;
done:
    Py_XDECREF(r);
    Py_XDECREF(pl);
    Py_XDECREF(fn);
    Py_XDECREF(g);
    return rc;
}

/* ---- the main side --------------------------------------------------- */

static worker *
get_worker(PyObject *cap)
{
    worker *wk = PyCapsule_GetPointer(cap, CAPSULE);
    if (wk == NULL) {
        return NULL;
    }
    if (wk->interp == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "goroutine.interp: the worker interpreter has ended");
        return NULL;
    }
    if (wk->forkgen != atomic_load(&gr_forkgen)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "goroutine.interp: a worker interpreter does not "
                        "survive fork: make a new Pool in the child");
        return NULL;
    }
    return wk;
}

/* Attach the worker's keeper thread state (taking its GIL) on this
 * thread, unless the worker has ended: false then.  No GIL held on entry;
 * keeper_leave undoes it. */
static bool
keeper_enter(worker *wk)
{
    pthread_mutex_lock(&wk->kmu);
    if (wk->keeper == NULL) {
        pthread_mutex_unlock(&wk->kmu);
        return false;
    }
    gr_pystate_foreign_attach(wk->keeper);
    return true;
}

static void
keeper_leave(worker *wk)
{
    PyEval_SaveThread();
    pthread_mutex_unlock(&wk->kmu);
}

/* _core._interp_new(path, paths) -> capsule: a new interpreter with its
 * own GIL, booted with goroutine/_worker.py.  paths: the sys.path to give
 * it, as bytes ('\0'-separated, filesystem encoding). */
static PyObject *
interp_new(PyObject *module, PyObject *args)
{
    const char *path, *paths;
    Py_ssize_t npaths;
    if (!PyArg_ParseTuple(args, "sy#:_interp_new", &path, &paths, &npaths)) {
        return NULL;
    }
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "goroutine.interp: make a Pool in the main "
                        "interpreter");
        return NULL;
    }
    worker *wk = calloc(1, sizeof *wk);
    if (wk == NULL) {
        return PyErr_NoMemory();
    }
    pthread_mutex_init(&wk->mu, NULL);
    pthread_mutex_init(&wk->kmu, NULL);
    wk->forkgen = atomic_load(&gr_forkgen);
    PyInterpreterConfig cfg = {
        .use_main_obmalloc = 0,
        .allow_fork = 0,
        .allow_exec = 0,
        .allow_threads = 1,
        .allow_daemon_threads = 0,
        .check_multi_interp_extensions = 1,
        .gil = PyInterpreterConfig_OWN_GIL,
    };
    char err[256] = "";
    PyThreadState *mts = PyEval_SaveThread();
    PyThreadState *wts = NULL;
    PyStatus st = Py_NewInterpreterFromConfig(&wts, &cfg);
    if (PyStatus_Exception(st) || wts == NULL) {
        snprintf(err, sizeof err, "%s",
                 st.err_msg != NULL ? st.err_msg : "failed");
        PyEval_RestoreThread(mts);
        free(wk);
        return PyErr_Format(PyExc_RuntimeError, "goroutine.interp: cannot "
                            "make a worker interpreter: %s", err);
    }
    /* wts is current and holds the worker's GIL. */
    wk->interp = wts->interp;
    wk->id = PyInterpreterState_GetID(wk->interp);
    if (worker_boot(path, paths, npaths) < 0) {
        blob eb = {NULL, 0};
        blob_error(&eb, "booting the worker");
        snprintf(err, sizeof err, "%.*s", (int)(eb.len > 0 ? eb.len - 1 : 0),
                 eb.buf != NULL ? eb.buf + 1 : "");
        free(eb.buf);
        Py_EndInterpreter(wts);
        PyEval_RestoreThread(mts);
        free(wk);
        return PyErr_Format(PyExc_RuntimeError, "goroutine.interp: %s", err);
    }
    /* Keep wts (detached) for the worker's life: 3.12 gives a new thread
     * state the interpreter's statically allocated first one whenever its
     * list is empty, and resets that one only after unlisting it, so a
     * goroutine leaving an idle worker raced the next one in
     * ("init_threadstate: thread state already initialized").  With wts
     * listed the list is never empty.  It also is the thread state that
     * ends the worker and that the exit path uses. */
    wk->keeper = wts;
    PyEval_SaveThread();
    PyEval_RestoreThread(mts);
    PyObject *cap = PyCapsule_New(wk, CAPSULE, NULL);
    if (cap == NULL) {
        /* The interpreter stays (rare: out of memory for a capsule). */
        return NULL;
    }
    return cap;
}

/* _core._interp_run(worker, payload) -> bytes: run
 * goroutine_worker._run(payload) in the worker, as this goroutine.  The
 * answer is goroutine_worker's bytes; a failure of the crossing itself
 * raises RuntimeError here. */
static PyObject *
interp_run(PyObject *module, PyObject *args)
{
    PyObject *cap, *payload;
    unsigned long long goid = 0;
    if (!PyArg_ParseTuple(args, "OS|K:_interp_run", &cap, &payload, &goid)) {
        return NULL;
    }
    worker *wk = get_worker(cap);
    if (wk == NULL) {
        return NULL;
    }
    blob in, out = {NULL, 0};
    if (blob_from(&in, payload) < 0) {
        return NULL;
    }
    char *lo = NULL;
    size_t size = 0;
    gr_g *g = gr_getg();
    if (g != NULL) {
        gr_stack *gs = gr_g_stack(g);
        lo = gs->lo;
        size = gs->size;
    }
    crossing c = {.wk = wk, .where = IN_WORKER, .goid = goid};
    c.w = gr_pystate_foreign_new(wk->interp, lo, size);
    if (c.w == NULL) {
        free(in.buf);
        return PyErr_NoMemory();
    }
    crossing_link(&c);
    c.mts = PyEval_SaveThread();
    gr_pystate_foreign_attach(c.w);

    /* Worker interpreter. */
    PyObject *d = PyThreadState_GetDict();
    PyObject *key = PyLong_FromVoidPtr(&c);
    PyObject *arg = blob_take(&in), *r = NULL;
    if (d != NULL && key != NULL && arg != NULL &&
        PyDict_SetItemString(d, XKEY, key) == 0) {
        PyObject *mod = PyImport_ImportModule("goroutine_worker");
        if (mod != NULL) {
            r = PyObject_CallMethod(mod, "_run", "O", arg);
            Py_DECREF(mod);
        }
    }
    Py_XDECREF(key);
    Py_XDECREF(arg);
    if (r == NULL && PyErr_ExceptionMatches(PyExc_SystemExit)) {
        /* The exit path's SystemExit (_interp_stop), or the goroutine's
         * own sys.exit() that escaped _run's handler: it ends the
         * goroutine quietly, as sys.exit() in a goroutine does. */
        PyErr_Clear();
        out.buf = malloc(1);
        if (out.buf != NULL) {
            out.buf[0] = 'X';
            out.len = 1;
        }
    }
    else if (r == NULL || blob_from(&out, r) < 0) {
        blob_error(&out, "in the worker interpreter");
    }
    Py_XDECREF(r);
    PyThreadState_Clear(c.w);
    pthread_mutex_lock(&wk->mu);
    crossing_unlink_locked(&c);
    pthread_mutex_unlock(&wk->mu);
    PyThreadState_DeleteCurrent();

    PyEval_RestoreThread(c.mts);
    if (out.buf == NULL) {
        return PyErr_NoMemory();
    }
    if (out.len == 1 && out.buf[0] == 'X') {
        free(out.buf);
        PyErr_SetNone(PyExc_SystemExit);
        return NULL;
    }
    if (out.len > 0 && out.buf[0] == 'E') {
        PyErr_Format(PyExc_RuntimeError, "goroutine.interp: %.*s",
                     (int)(out.len - 1), out.buf + 1);
        free(out.buf);
        return NULL;
    }
    return blob_take(&out);
}

/* _core._interp_end(worker): end the interpreter.  No goroutine may be
 * inside it (goroutine/interp.py counts them; at exit _interp_abandon
 * runs first): ValueError otherwise. */
static PyObject *
interp_end(PyObject *module, PyObject *cap)
{
    worker *wk = PyCapsule_GetPointer(cap, CAPSULE);
    if (wk == NULL) {
        return NULL;
    }
    if (wk->interp == NULL || wk->forkgen != atomic_load(&gr_forkgen)) {
        Py_RETURN_NONE;     /* ended already, or CPython did (fork) */
    }
    pthread_mutex_lock(&wk->mu);
    bool busy = wk->crossings != NULL;
    pthread_mutex_unlock(&wk->mu);
    if (busy) {
        PyErr_SetString(PyExc_ValueError, "goroutine.interp: cannot end a "
                        "worker interpreter with goroutines inside");
        return NULL;
    }
    wk->interp = NULL;
    PyThreadState *mts = PyEval_SaveThread();
    pthread_mutex_lock(&wk->kmu);
    gr_pystate_foreign_attach(wk->keeper);
    Py_EndInterpreter(wk->keeper);  /* leaves no thread state current */
    wk->keeper = NULL;
    pthread_mutex_unlock(&wk->kmu);
    PyEval_RestoreThread(mts);
    Py_RETURN_NONE;
}

/* _core._interp_stop(worker) -> (running, parked): at exit.  Goroutines
 * running Python in the worker get SystemExit at their next check;
 * goroutines parked in the main interpreter from it lose their worker
 * thread state (cleared and deleted here) and never run again.  Returns
 * how many of each there were. */
static PyObject *
interp_stop(PyObject *module, PyObject *cap)
{
    worker *wk = get_worker(cap);
    if (wk == NULL) {
        return NULL;
    }
    int running = 0, parked = 0;
    PyThreadState *mts = PyEval_SaveThread();
    if (!keeper_enter(wk)) {
        PyEval_RestoreThread(mts);
        PyErr_SetString(PyExc_RuntimeError,
                        "goroutine.interp: the worker interpreter has ended");
        return NULL;
    }
    /* Worker GIL held: no crossing moves between IN_WORKER's attach and
     * our look (its attach needs this GIL); one in IN_MAIN cannot come
     * back once marked. */
    pthread_mutex_lock(&wk->mu);
    for (;;) {
        crossing *c = wk->crossings;
        while (c != NULL && c->where != IN_MAIN) {
            c = c->next;
        }
        if (c == NULL) {
            break;
        }
        c->abandoned = true;
        crossing_unlink_locked(c);
        parked++;
        PyThreadState *w = c->w;
        pthread_mutex_unlock(&wk->mu);
        PyThreadState_Clear(w);
        PyThreadState_Delete(w);
        pthread_mutex_lock(&wk->mu);
    }
    for (crossing *c = wk->crossings; c != NULL; c = c->next) {
        running++;
        PyThreadState_SetAsyncExc(c->w->thread_id, PyExc_SystemExit);
    }
    pthread_mutex_unlock(&wk->mu);
    keeper_leave(wk);
    PyEval_RestoreThread(mts);
    return Py_BuildValue("ii", running, parked);
}

/* _core._interp_frames(worker) -> [(goid, text)]: the Python stack of
 * each goroutine inside the worker, formatted there (by
 * goroutine_worker._stack_text) for runtime.stack().  Main GIL held on
 * entry and exit; in between the worker's GIL, which makes every
 * crossing's frames stable: one running worker code waits for that GIL,
 * one parked in main is detached, and none can leave (leaving deletes
 * its thread state, which needs the worker's GIL). */
static PyObject *
interp_frames(PyObject *module, PyObject *cap)
{
    worker *wk = get_worker(cap);
    if (wk == NULL) {
        return NULL;
    }
    PyThreadState *mts = PyEval_SaveThread();
    if (!keeper_enter(wk)) {
        PyEval_RestoreThread(mts);
        return PyList_New(0);
    }
    size_t n = 0, k = 0;
    pthread_mutex_lock(&wk->mu);
    for (crossing *c = wk->crossings; c != NULL; c = c->next) {
        n++;
    }
    PyThreadState **ts = malloc((n + 1) * sizeof *ts);
    uint64_t *ids = malloc((n + 1) * sizeof *ids);
    for (crossing *c = wk->crossings; c != NULL && ts && ids; c = c->next) {
        ts[k] = c->w;
        ids[k++] = c->goid;
    }
    pthread_mutex_unlock(&wk->mu);
    blob *txt = calloc(k + 1, sizeof *txt);
    PyObject *mod = PyImport_ImportModule("goroutine_worker");
    for (size_t i = 0; i < k && txt != NULL && mod != NULL; i++) {
        PyObject *f = (PyObject *)PyThreadState_GetFrame(ts[i]);
        PyObject *r = PyObject_CallMethod(mod, "_stack_text", "O",
                                          f != NULL ? f : Py_None);
        Py_XDECREF(f);
        PyObject *b = r != NULL ? PyUnicode_AsUTF8String(r) : NULL;
        if (b == NULL || blob_from(&txt[i], b) < 0) {
            PyErr_Clear();      /* that goroutine shows no worker frames */
        }
        Py_XDECREF(b);
        Py_XDECREF(r);
    }
    Py_XDECREF(mod);
    PyErr_Clear();
    keeper_leave(wk);
    PyEval_RestoreThread(mts);
    PyObject *out = ts && ids && txt ? PyList_New(0) : PyErr_NoMemory();
    for (size_t i = 0; i < k && txt != NULL; i++) {
        if (out != NULL && txt[i].buf != NULL) {
            PyObject *s = PyUnicode_DecodeUTF8(txt[i].buf, txt[i].len,
                                               "replace");
            PyObject *item = s ? Py_BuildValue("(KN)",
                                  (unsigned long long)ids[i], s) : NULL;
            if (item == NULL || PyList_Append(out, item) < 0) {
                Py_CLEAR(out);
            }
            Py_XDECREF(item);
        }
        free(txt[i].buf);
    }
    free(txt);
    free(ts);
    free(ids);
    return out;
}

/* _core._interp_busy(worker) -> int: goroutines inside the worker. */
static PyObject *
interp_busy(PyObject *module, PyObject *cap)
{
    worker *wk = PyCapsule_GetPointer(cap, CAPSULE);
    if (wk == NULL) {
        return NULL;
    }
    int n = 0;
    pthread_mutex_lock(&wk->mu);
    for (crossing *c = wk->crossings; c != NULL; c = c->next) {
        n++;
    }
    pthread_mutex_unlock(&wk->mu);
    return PyLong_FromLong(n);
}

static PyObject *
interp_id(PyObject *module, PyObject *cap)
{
    worker *wk = PyCapsule_GetPointer(cap, CAPSULE);
    return wk == NULL ? NULL : PyLong_FromLongLong(wk->id);
}

/* _core._interp_register(serve): the main side's serve callback. */
static PyObject *
interp_register(PyObject *module, PyObject *fn)
{
    if (!PyCallable_Check(fn)) {
        return PyErr_Format(PyExc_TypeError, "_interp_register: serve must "
                            "be callable, not %.200s", Py_TYPE(fn)->tp_name);
    }
    Py_XSETREF(serve_cb, Py_NewRef(fn));
    Py_RETURN_NONE;
}

static PyMethodDef interp_methods[] = {
    {"_interp_new", interp_new, METH_VARARGS, NULL},
    {"_interp_run", interp_run, METH_VARARGS, NULL},
    {"_interp_end", interp_end, METH_O, NULL},
    {"_interp_stop", interp_stop, METH_O, NULL},
    {"_interp_busy", interp_busy, METH_O, NULL},
    {"_interp_frames", interp_frames, METH_O, NULL},
    {"_interp_id", interp_id, METH_O, NULL},
    {"_interp_register", interp_register, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

int
gr_interp_exec(PyObject *module)
{
    if (PyModule_AddIntConstant(module, "_HAVE_WORKERS", 1) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, interp_methods);
}

#else /* 3.10, 3.11: no per-interpreter GIL */

static PyObject *
interp_none(PyObject *module, PyObject *args)
{
    PyErr_SetString(PyExc_RuntimeError, "goroutine.interp needs CPython "
                    "3.12 or later (interpreters with their own GIL)");
    return NULL;
}

static PyMethodDef interp_methods[] = {
    {"_interp_new", interp_none, METH_VARARGS, NULL},
    {"_interp_run", interp_none, METH_VARARGS, NULL},
    {"_interp_end", interp_none, METH_O, NULL},
    {"_interp_stop", interp_none, METH_O, NULL},
    {"_interp_busy", interp_none, METH_O, NULL},
    {"_interp_frames", interp_none, METH_O, NULL},
    {"_interp_id", interp_none, METH_O, NULL},
    {"_interp_register", interp_none, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

int
gr_interp_exec(PyObject *module)
{
    if (PyModule_AddIntConstant(module, "_HAVE_WORKERS", 0) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, interp_methods);
}

#endif
