/*
 * core.h: the few types shared between the files of goroutine._core, and
 * the internal API between them.
 *
 * Every concept file (sched.c, chan.c, gomap.c, ...) exposes at most:
 *   - gr_<concept>_exec(module): adds its types and functions to the module
 *     (called once per module object by module.c's Py_mod_exec slot);
 *   - gr_<concept>_<verb>(...): what other files call.
 * Names follow STYLE.md: Go's names for runtime structs, gr_ for cross-file
 * internals, GR_ for macros, nothing with a Py prefix.
 */
#ifndef GR_CORE_H
#define GR_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdbool.h>

/*
 * Process-wide objects.  The scheduler owns OS threads, so the runtime is a
 * process-wide singleton anyway; the exception classes live here as well so
 * that GIL-holding code in any file can raise them without a module lookup
 * (PyType_GetModuleByDef does not exist on 3.10).  Filled by module.c on the
 * first exec and never freed: the threads that use them can outlive the
 * module object.
 */
typedef struct {
    PyObject *Panic;        /* goroutine.Panic(Exception) */
    PyObject *Deadlock;     /* goroutine.Deadlock(RuntimeError) */
} gr_globals_t;

extern gr_globals_t gr_globals;

/* Raise goroutine.Panic(msg) with Go's wording; returns NULL. */
PyObject *gr_panic(const char *msg);

int gr_sched_exec(PyObject *module);

#endif /* GR_CORE_H */
