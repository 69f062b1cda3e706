#!/usr/bin/python3
"""loop_bench peers: the same scheduling micro-benchmarks as bench/loop_bench.c, on asyncio or uvloop.

Usage: python3 loop_bench.py --loop asyncio|uvloop [--n N] [--reps R]
Prints one line on stdout:  call_soon=<rate> call_later=<rate> call_later_cancel=<rate>
(rates in callbacks/operations per second, integers); the N used goes to stderr.
Exits with status 2 if the requested loop cannot be imported (the C driver then prints NA).

Workloads (identical in loop_bench.c; a fresh loop per repetition, best (max rate) of R=3 kept):
  1. call_soon: schedule N callbacks with call_soon (the callback increments a counter; the one
     that brings it to N records the end time and calls stop()), then run_forever() until all ran.
     rate = N / (time from the first schedule to the last callback).
  2. call_later: schedule N timers with delay = 0.001 + (i % 1000) * 1e-5 s (1..11 ms, strictly
     positive so uvloop does not turn them into call_soon); each callback counts down, the last
     one to fire records the end time and calls stop(); run_forever() until all fired.
     rate = N / elapsed. elapsed includes up to ~11 ms of waiting for the latest timer, negligible
     against the time to schedule and fire N timers.
  3. call_later_cancel: schedule N timers with delay = 3600 + (i % 1000) * 1e-5 s, keeping the
     handles, cancel each in the order scheduled, then stop() and run_forever() for one iteration
     so the loop processes the cancellations. rate = N / (first schedule .. run_forever return).

Fast-path idioms are used on the Python side (bound methods hoisted into locals) and the cyclic GC
is disabled during each timed region (collected between repetitions), which only favours the peers.
Timing uses time.perf_counter() (CLOCK_MONOTONIC on Linux, as in the C side).
"""

import argparse
import gc
import sys
import time

perf_counter = time.perf_counter


def bench_call_soon(loop, n):
    count = 0
    t_end = 0.0
    stop = loop.stop

    def cb():
        nonlocal count, t_end
        count += 1
        if count == n:
            t_end = perf_counter()
            stop()

    call_soon = loop.call_soon
    t0 = perf_counter()
    for _ in range(n):
        call_soon(cb)
    loop.run_forever()
    if count != n:
        raise RuntimeError("call_soon: %d of %d callbacks ran" % (count, n))
    return n / (t_end - t0)


def bench_call_later(loop, n):
    remaining = n
    t_end = 0.0
    stop = loop.stop

    def cb():
        nonlocal remaining, t_end
        remaining -= 1
        if remaining == 0:
            t_end = perf_counter()
            stop()

    call_later = loop.call_later
    t0 = perf_counter()
    for i in range(n):
        call_later(0.001 + (i % 1000) * 1e-5, cb)
    loop.run_forever()
    if remaining != 0:
        raise RuntimeError("call_later: %d of %d timers did not fire" % (remaining, n))
    return n / (t_end - t0)


def bench_call_later_cancel(loop, n):
    fired = 0

    def cb():
        nonlocal fired
        fired += 1

    call_later = loop.call_later
    t0 = perf_counter()
    handles = [call_later(3600.0 + (i % 1000) * 1e-5, cb) for i in range(n)]
    for h in handles:
        h.cancel()
    loop.stop()
    loop.run_forever()
    t1 = perf_counter()
    if fired != 0:
        raise RuntimeError("call_later_cancel: %d cancelled timers ran" % fired)
    del handles
    return n / (t1 - t0)


def best_of(new_loop, fn, n, reps):
    best = 0.0
    for _ in range(reps):
        loop = new_loop()
        try:
            gc.collect()
            gc.disable()
            try:
                rate = fn(loop, n)
            finally:
                gc.enable()
        finally:
            loop.close()
        gc.collect()
        best = max(best, rate)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), required=True)
    ap.add_argument("--n", type=int, default=1000000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    if args.n < 1 or args.reps < 1:
        ap.error("--n and --reps must be positive")

    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError as e:
            print("loop_bench.py: uvloop not available: %s" % e, file=sys.stderr)
            return 2
        new_loop = uvloop.new_event_loop
    else:
        import asyncio
        new_loop = asyncio.new_event_loop

    print("loop_bench.py: loop=%s n=%d reps=%d python=%s" % (
        args.loop, args.n, args.reps, sys.version.split()[0]), file=sys.stderr)
    rates = []
    for fn in (bench_call_soon, bench_call_later, bench_call_later_cancel):
        rates.append(best_of(new_loop, fn, args.n, args.reps))
    print("call_soon=%d call_later=%d call_later_cancel=%d" % tuple(int(r) for r in rates))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
