/*
 * sched.c: Go's scheduler (G, M, P) for Python callables.
 *
 * This first piece holds the runtime queries that need no scheduler yet.
 */
#define _GNU_SOURCE
#include "core.h"

#include <sched.h>
#include <unistd.h>

/* Go's runtime.NumCPU: the CPUs this process may run on (its affinity
 * mask), which can be fewer than the machine has. */
static int
num_cpu(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) {
            return n;
        }
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static PyObject *
sched_num_cpu(PyObject *module, PyObject *unused)
{
    return PyLong_FromLong(num_cpu());
}

static PyMethodDef sched_methods[] = {
    {"num_cpu", sched_num_cpu, METH_NOARGS,
     "num_cpu() -> int\n--\n\n"
     "The number of CPUs this process can use (its affinity mask)."},
    {NULL, NULL, 0, NULL},
};

int
gr_sched_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, sched_methods);
}
