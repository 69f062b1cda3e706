#!/usr/bin/python3
"""threadsafe_bench peers: call_soon_threadsafe throughput and wake latency of asyncio or uvloop.

Usage: python3 threadsafe_bench.py --loop asyncio|uvloop [--total N] [--samples S] [--reps R]
                                   [--timeout SECONDS]
Prints one line on stdout:
  p1=<msgs/s> p2=<msgs/s> p4=<msgs/s> lat_p50=<us> lat_p99=<us>
(rates are integers, latencies in microseconds with 2 decimals); notes go to stderr.
Exits with status 2 if the requested loop cannot be imported (the C driver then prints NA), and
with status 1 (after a traceback) if a measurement overruns --timeout.

Workloads (the same as bench/threadsafe_bench.c, scaled down):
  Throughput: the loop runs run_forever() in its own thread; P producer threads (1, 2, 4) each
  call loop.call_soon_threadsafe(cb) total/P times after a start barrier; cb increments a counter
  and the call that brings it to total records the end time and stops the loop.
  rate = total / (start barrier .. last callback); best of R runs, a fresh loop per run.
  Wake latency: the loop idle in its thread; the main thread sleeps 1 ms, takes t0 just before
  loop.call_soon_threadsafe(cb, t0), and waits until cb ran; cb records perf_counter() - t0 as
  its first action. S samples; nearest-rank p50 and p99.
The cyclic GC is disabled inside each timed region (collected between runs), which only favours
the peers. Timing uses time.perf_counter() (CLOCK_MONOTONIC on Linux, as on the C side).
"""

import argparse
import faulthandler
import gc
import math
import sys
import threading
import time

perf_counter = time.perf_counter


class Timeout(Exception):
    pass


def start_loop(new_loop, timeout):
    loop = new_loop()
    th = threading.Thread(target=loop.run_forever, name="loop", daemon=True)
    th.start()
    ready = threading.Event()
    loop.call_soon_threadsafe(ready.set)
    if not ready.wait(timeout):
        raise Timeout("loop did not start")
    return loop, th


def join_loop(loop, th, timeout):
    th.join(timeout)
    if th.is_alive():
        raise Timeout("loop did not stop")
    loop.close()


def throughput_once(new_loop, nprod, total, timeout):
    per = total // nprod
    total = per * nprod
    loop, th = start_loop(new_loop, timeout)
    count = 0
    t_end = 0.0
    stop = loop.stop

    def cb():
        nonlocal count, t_end
        count += 1
        if count == total:
            t_end = perf_counter()
            stop()

    barrier = threading.Barrier(nprod + 1, timeout=timeout)

    def producer():
        cst = loop.call_soon_threadsafe
        barrier.wait()
        for _ in range(per):
            cst(cb)

    prods = [threading.Thread(target=producer, daemon=True) for _ in range(nprod)]
    for p in prods:
        p.start()
    gc.collect()
    gc.disable()
    try:
        barrier.wait()
        t0 = perf_counter()
        deadline = time.monotonic() + timeout
        for p in prods:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                raise Timeout("producer did not finish")
        join_loop(loop, th, max(0.0, deadline - time.monotonic()))
    finally:
        gc.enable()
    if count != total:
        raise RuntimeError("%d of %d callbacks ran" % (count, total))
    return total / (t_end - t0)


def latency(new_loop, samples, timeout, gap=0.001):
    loop, th = start_loop(new_loop, timeout)
    lat = []
    ev = threading.Event()

    def cb(t0):
        lat.append(perf_counter() - t0)
        ev.set()

    cst = loop.call_soon_threadsafe
    sleep = time.sleep
    gc.collect()
    gc.disable()
    try:
        for _ in range(samples):
            sleep(gap)
            ev.clear()
            t0 = perf_counter()
            cst(cb, t0)
            if not ev.wait(timeout):
                raise Timeout("callback did not run")
    finally:
        gc.enable()
    cst(loop.stop)
    join_loop(loop, th, timeout)
    lat.sort()
    n = len(lat)

    def pctl(p):
        rank = min(n, max(1, math.ceil(p * n - 1e-9)))
        return lat[rank - 1] * 1e6

    return pctl(0.50), pctl(0.99)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), required=True)
    ap.add_argument("--total", type=int, default=200000)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=280.0,
                    help="bound on the whole run (and on each wait)")
    args = ap.parse_args()
    if args.total < 4 or args.samples < 1 or args.reps < 1 or args.timeout <= 0:
        ap.error("--total >= 4, --samples, --reps and --timeout must be positive")
    faulthandler.dump_traceback_later(args.timeout, exit=True)

    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError as e:
            print("threadsafe_bench.py: uvloop not available: %s" % e, file=sys.stderr)
            return 2
        new_loop = uvloop.new_event_loop
        version = uvloop.__version__
    else:
        import asyncio
        new_loop = asyncio.new_event_loop
        version = "stdlib"

    print("threadsafe_bench.py: loop=%s (%s) total=%d samples=%d reps=%d python=%s" % (
        args.loop, version, args.total, args.samples, args.reps, sys.version.split()[0]),
        file=sys.stderr)
    rates = []
    for nprod in (1, 2, 4):
        rates.append(max(throughput_once(new_loop, nprod, args.total, args.timeout)
                         for _ in range(args.reps)))
    p50, p99 = latency(new_loop, args.samples, args.timeout)
    print("p1=%d p2=%d p4=%d lat_p50=%.2f lat_p99=%.2f" % (
        int(rates[0]), int(rates[1]), int(rates[2]), p50, p99))
    sys.stdout.flush()
    faulthandler.cancel_dump_traceback_later()
    return 0


if __name__ == "__main__":
    sys.exit(main())
