"""Fan-in: several producers merged with select, with a per-receive
timeout from time.after and an overall deadline."""
from goroutine import chan, go, select, time


def producer(name, period, out, n):
    for i in range(n):
        time.sleep(period)
        out.send(f"{name}{i}")
    out.close()


def main():
    fast, slow = chan(), chan()
    go(producer, "fast", 0.005, fast, 10)
    go(producer, "slow", 0.02, slow, 3)
    got, timeouts = [], 0
    open_ = {0: fast, 1: slow}
    deadline = time.after(2)
    while open_:
        keys = list(open_)
        cases = [open_[k].recv_ for k in keys]
        i, rx = select(*cases, time.after(0.015).recv, deadline.recv)
        if i == len(keys):
            timeouts += 1
            continue
        if i == len(keys) + 1:
            break
        v, ok = rx
        if not ok:
            del open_[keys[i]]
            continue
        got.append(v)
    print(f"fan-in: {len(got)} values from 2 producers, {timeouts} "
          f"receive timeouts; first few: {got[:5]}")
    assert len(got) == 13


if __name__ == "__main__":
    main()
