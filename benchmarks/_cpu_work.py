"""Work for benchmarks/interp_cpu.py, importable in a worker interpreter
and a child process (so it must not import goroutine)."""


def count(n):
    s = 0
    for i in range(n):
        s += i * i % 7
    return s


def count_to(out, n):
    out.send(count(n))


def pong(inp, out, n):
    for _ in range(n):
        out.send(inp.recv())


def mp_pong(inp, out, n):
    for _ in range(n):
        out.put(inp.get())
