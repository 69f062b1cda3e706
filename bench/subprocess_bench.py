"""subprocess_bench peers: spawn-and-wait of /bin/true with stdout piped, on asyncio or uvloop, as
bench/subprocess_bench.c measures it.

Usage: python3 subprocess_bench.py --loop asyncio|uvloop [--n N] [--heap-mib M]

First touches M MiB of heap (every page written, as the C side does), then, for REPS repetitions
on a fresh loop: N times in a row, create_subprocess_exec('/bin/true', stdout=PIPE), read its
stdout to EOF, and wait() for it. Prints one line: spawn_wait=<spawns per second> (best of the
repetitions)."""
import argparse
import asyncio
import subprocess
import time

REPS = 3


async def spawn_wait(n):
    t0 = time.monotonic()
    for _ in range(n):
        proc = await asyncio.create_subprocess_exec("/bin/true", stdout=subprocess.PIPE)
        await proc.stdout.read()
        await proc.wait()
    return n / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), required=True)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--heap-mib", type=int, default=1024)
    args = ap.parse_args()
    heap = bytearray(args.heap_mib << 20)
    heap[::4096] = b"\x01" * len(range(0, len(heap), 4096))
    if args.loop == "uvloop":
        import uvloop

        new_loop = uvloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop
    best = 0.0
    for _ in range(REPS):
        loop = new_loop()
        try:
            best = max(best, loop.run_until_complete(spawn_wait(args.n)))
        finally:
            loop.close()
    print(f"spawn_wait={int(best)}", flush=True)
    del heap


if __name__ == "__main__":
    main()
