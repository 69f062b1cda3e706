#!/usr/bin/python3
"""executor_bench peers: run_in_executor on asyncio or uvloop, as bench/executor_bench.c measures it.

Usage: python3 executor_bench.py --loop asyncio|uvloop [--n N] [--rtt K]
Prints one line on stdout:
  roundtrips=<per s> rtt_p50_us=<us> rtt_p99_us=<us> blocking_ms=<ms>
Exits with status 2 if the requested loop cannot be imported (the C driver then prints NA).

Workloads (the same as executor_bench.c):
  1. roundtrips: N (default 100,000) empty jobs, 1024 in flight: each completion (a done callback
     on the loop) counts and submits the next with loop.run_in_executor(None, fn). rate = N /
     (first submission .. last completion). Best of 3. The loop's default executor
     (ThreadPoolExecutor, min(32, CPUs + 4) workers).
  2. rtt: one empty job at a time, K (default 5,000) round trips after 1,000 of warm-up; each from
     the submission to its done callback. p50 and p99 in microseconds.
  3. blocking: 1,000 jobs of time.sleep(0.001), all submitted at once to a ThreadPoolExecutor(64),
     gathered; the time until the last completes. Best of 3 on the same pool.
The cyclic GC is disabled inside the timed regions (which only favours the peers).
"""

import argparse
import concurrent.futures
import gc
import sys
import time

perf_counter = time.perf_counter
WINDOW = 1024
WARMUP = 1000


def empty():
    return None


def bench_roundtrips(loop, n):
    state = {"submitted": 0, "done": 0, "t_end": 0.0}
    run = loop.run_in_executor

    def on_done(fut):
        fut.result()
        state["done"] += 1
        if state["done"] == n:
            state["t_end"] = perf_counter()
            loop.stop()
            return
        if state["submitted"] < n:
            submit()

    def submit():
        state["submitted"] += 1
        run(None, empty).add_done_callback(on_done)

    t0 = perf_counter()
    for _ in range(min(WINDOW, n)):
        submit()
    loop.run_forever()
    return n / (state["t_end"] - t0)


def bench_rtt(loop, k):
    samples = []
    state = {"done": 0, "t": 0.0}
    run = loop.run_in_executor
    total = WARMUP + k

    def on_done(fut):
        t = perf_counter()
        fut.result()
        state["done"] += 1
        if state["done"] > WARMUP:
            samples.append((t - state["t"]) * 1e6)
        if state["done"] == total:
            loop.stop()
            return
        submit()

    def submit():
        state["t"] = perf_counter()
        run(None, empty).add_done_callback(on_done)

    submit()
    loop.run_forever()
    samples.sort()
    return samples[int(0.5 * (len(samples) - 1) + 0.5)], samples[int(0.99 * (len(samples) - 1) + 0.5)]


def bench_blocking(loop, pool):
    async def main():
        t0 = perf_counter()
        futs = [loop.run_in_executor(pool, time.sleep, 0.001) for _ in range(1000)]
        import asyncio
        await asyncio.gather(*futs)
        return (perf_counter() - t0) * 1e3
    return loop.run_until_complete(main())


def timed(fn, *args):
    gc.collect()
    gc.disable()
    try:
        return fn(*args)
    finally:
        gc.enable()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), required=True)
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--rtt", type=int, default=5000)
    args = ap.parse_args()
    if args.n < WINDOW or args.rtt < 1:
        ap.error("--n must be >= %d and --rtt positive" % WINDOW)

    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError as e:
            print("executor_bench.py: uvloop not available: %s" % e, file=sys.stderr)
            return 2
        new_loop = uvloop.new_event_loop
    else:
        import asyncio
        new_loop = asyncio.new_event_loop

    print("executor_bench.py: loop=%s n=%d rtt=%d python=%s" % (
        args.loop, args.n, args.rtt, sys.version.split()[0]), file=sys.stderr)

    loop = new_loop()
    try:
        rate = 0.0
        for _ in range(3):
            rate = max(rate, timed(bench_roundtrips, loop, args.n))
        p50, p99 = timed(bench_rtt, loop, args.rtt)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=64)
        best = float("inf")
        for _ in range(3):
            best = min(best, timed(bench_blocking, loop, pool))
        pool.shutdown(wait=True)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor()) \
            if hasattr(loop, "shutdown_default_executor") else None
        loop.close()
    print("roundtrips=%d rtt_p50_us=%.2f rtt_p99_us=%.2f blocking_ms=%.2f" % (rate, p50, p99, best))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
