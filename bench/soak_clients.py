#!/usr/bin/python3
"""Hostile HTTP clients for the soak run (bench/soak.sh): they run beside lcbench's well-behaved
load until SECONDS have passed, then print one line of counts.

    soak_clients.py HOST PORT SECONDS

Four kinds, each a fixed number of concurrent clients that reconnect when done:
  reset     send half a request, then reset the connection (SO_LINGER 0 + close)
  noread    send pipelined requests as fast as the socket takes them and never read, for 5 s,
            then reset (the server must stay bounded by its back-pressure and send timeout)
  trickle   send a request head one byte a second (slowloris); the server's header timeout must
            answer 408 and close; counted as 'trickle_closed' when it does
  garbage   send random bytes and read what comes back until the server closes

Only the standard library: Debian's /usr/bin/python3 is enough.
"""
import asyncio
import os
import random
import socket
import struct
import sys
import time

REQ = b"GET /plaintext HTTP/1.1\r\nHost: soak\r\n\r\n"
# A head that takes longer than the server's header timeout (60 s) at one byte a second.
SLOW_HEAD = b"GET /plaintext HTTP/1.1\r\nHost: soak\r\nX-Slow: " + b"s" * 100 + b"\r\n\r\n"
counts = {"reset": 0, "noread": 0, "trickle": 0, "trickle_closed": 0, "garbage": 0,
          "connect_errors": 0}


def rst(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


async def connect(host, port):
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, asyncio.TimeoutError):
        counts["connect_errors"] += 1
        await asyncio.sleep(0.2)
        return None


async def reset_client(host, port, end):
    while time.monotonic() < end:
        c = await connect(host, port)
        if c is None:
            continue
        _, w = c
        w.write(REQ[: random.randint(1, len(REQ) - 1)])
        await asyncio.sleep(random.uniform(0, 0.05))
        rst(w)
        counts["reset"] += 1
        await asyncio.sleep(0.01)


async def noread_client(host, port, end):
    while time.monotonic() < end:
        c = await connect(host, port)
        if c is None:
            continue
        _, w = c
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stop = min(end, time.monotonic() + 5)
        burst = REQ * 64
        try:
            while time.monotonic() < stop:
                w.write(burst)
                # Wait only while our own buffer is large: the server is paused or we are.
                if w.transport.get_write_buffer_size() > 1 << 20:
                    await asyncio.sleep(0.05)
                else:
                    await asyncio.sleep(0)
        except (ConnectionError, OSError):
            pass
        rst(w)
        counts["noread"] += 1


async def trickle_client(host, port, end):
    while time.monotonic() < end:
        c = await connect(host, port)
        if c is None:
            continue
        r, w = c
        counts["trickle"] += 1
        closed = False
        try:
            for b in SLOW_HEAD[:-2]:  # never finishes the head
                if time.monotonic() >= end:
                    break
                w.write(bytes([b]))
                try:
                    data = await asyncio.wait_for(r.read(4096), 1.0)
                    if not data or b"408" in data:
                        closed = True
                        break
                except asyncio.TimeoutError:
                    pass
        except (ConnectionError, OSError):
            closed = True
        if closed:
            counts["trickle_closed"] += 1
        rst(w)


async def garbage_client(host, port, end):
    while time.monotonic() < end:
        c = await connect(host, port)
        if c is None:
            continue
        r, w = c
        try:
            w.write(os.urandom(random.randint(1, 4096)))
            await asyncio.wait_for(r.read(65536), 2)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass
        rst(w)
        counts["garbage"] += 1
        await asyncio.sleep(0.05)


async def main():
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    end = time.monotonic() + seconds
    kinds = [(reset_client, 4), (noread_client, 2), (trickle_client, 8), (garbage_client, 2)]
    await asyncio.gather(*[k(host, port, end) for k, n in kinds for _ in range(n)])
    print("soak_clients " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
