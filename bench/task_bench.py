#!/usr/bin/python3
"""task_bench peers: the same task benchmarks as bench/task_bench.c, on asyncio or uvloop.

Usage: python3 task_bench.py --loop asyncio|uvloop [--n AWAITS] [--tasks N] [--pairs P]
                             [--batch B] [--reps R]
Prints one line on stdout:  await_resume=<ns> task_create_finish=<ns>
(nanoseconds per operation, one decimal); the counts used go to stderr.
Exits with status 2 if the requested loop cannot be imported (the C driver then prints NA).

Workloads (identical in task_bench.c; best (lowest) of R=5 repetitions, each on a fresh loop):
  1. await_resume: P pairs of tasks ping-pong through futures. Each task, R times: creates a
     fresh future (loop.create_future()), publishes it for its partner, completes the future its
     partner published (if the partner waits on one) and awaits its own; after its rounds it
     completes its partner's last future. Every await suspends and is resumed by the partner's
     set_result through the future's done callback (Task.__wakeup) in the next iteration.
     ns = time from run_forever() (tasks created before) to the last task's end / (2 P R).
  2. task_create_finish: batches of B tasks: create B tasks (loop.create_task(coro)) whose
     coroutine counts itself done (the B-th stops the loop), run_forever(), drop the tasks.
     ns = total time / tasks.

The cyclic GC is disabled inside each timed region (collected between repetitions) and bound
methods are hoisted into locals; both only favour the peers. Timing: time.perf_counter().
"""

import argparse
import gc
import sys
import time

perf_counter = time.perf_counter


def bench_await_resume(loop, pairs, rounds):
    create_future = loop.create_future
    state = {"finished": 0, "t_end": 0.0}
    nplayers = 2 * pairs

    def done():
        state["finished"] += 1
        if state["finished"] == nplayers:
            state["t_end"] = perf_counter()
            loop.stop()

    async def player(slots, me, other):
        for _ in range(rounds):
            fut = create_future()
            slots[me] = fut
            w = slots[other]
            if w is not None:
                slots[other] = None
                w.set_result(None)
            await fut
        w = slots[other]
        if w is not None:
            slots[other] = None
            w.set_result(None)
        done()

    tasks = []
    for _ in range(pairs):
        slots = [None, None]
        tasks.append(loop.create_task(player(slots, 0, 1)))
        tasks.append(loop.create_task(player(slots, 1, 0)))
    t0 = perf_counter()
    loop.run_forever()
    if state["finished"] != nplayers:
        raise RuntimeError("await_resume: %d of %d players finished" % (state["finished"], nplayers))
    for t in tasks:
        t.result()
    return (state["t_end"] - t0) * 1e9 / (nplayers * rounds)


def bench_task_create_finish(loop, ntasks, batch):
    create_task = loop.create_task
    stop = loop.stop
    state = [0]

    async def nop():
        state[0] += 1
        if state[0] == batch:
            stop()

    batches = ntasks // batch
    t0 = perf_counter()
    for _ in range(batches):
        state[0] = 0
        tasks = [create_task(nop()) for _ in range(batch)]
        loop.run_forever()
        if state[0] != batch:
            raise RuntimeError("task_create_finish: %d of %d tasks ran" % (state[0], batch))
        del tasks
    return (perf_counter() - t0) * 1e9 / (batches * batch)


def best_of(new_loop, fn, reps, *args):
    best = float("inf")
    for _ in range(reps):
        loop = new_loop()
        try:
            gc.collect()
            gc.disable()
            try:
                ns = fn(loop, *args)
            finally:
                gc.enable()
        finally:
            loop.close()
        gc.collect()
        best = min(best, ns)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), required=True)
    ap.add_argument("--n", type=int, default=400000, help="awaits of await_resume")
    ap.add_argument("--tasks", type=int, default=200000, help="tasks of task_create_finish")
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    rounds = args.n // (2 * args.pairs)
    if rounds < 1 or args.batch < 1 or args.tasks < args.batch or args.reps < 1:
        ap.error("need n >= 2*pairs, tasks >= batch >= 1, reps >= 1")

    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError as e:
            print("task_bench.py: uvloop not available: %s" % e, file=sys.stderr)
            return 2
        new_loop = uvloop.new_event_loop
    else:
        import asyncio
        new_loop = asyncio.new_event_loop

    print("task_bench.py: loop=%s awaits=%d (%d pairs x %d rounds) tasks=%d batch=%d reps=%d "
          "python=%s" % (args.loop, 2 * args.pairs * rounds, args.pairs, rounds,
                         (args.tasks // args.batch) * args.batch, args.batch, args.reps,
                         sys.version.split()[0]), file=sys.stderr)
    a = best_of(new_loop, bench_await_resume, args.reps, args.pairs, rounds)
    c = best_of(new_loop, bench_task_create_finish, args.reps, args.tasks, args.batch)
    print("await_resume=%.1f task_create_finish=%.1f" % (a, c))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
