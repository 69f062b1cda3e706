"""asyncio's sock_* echo server (issue 15's comparison for bench/sock_echo_server.c): one
accept loop with loop.sock_accept, one task per connection with loop.sock_recv_into and
loop.sock_sendall. Run with Debian's /usr/bin/python3 (uvloop installed there):

    python3 bench/sock_echo.py [--port P] [--loop asyncio|uvloop]
"""
import argparse
import asyncio
import signal
import socket


async def echo(loop, conn):
    buf = bytearray(65536)
    view = memoryview(buf)
    with conn:
        while True:
            n = await loop.sock_recv_into(conn, buf)
            if not n:
                return
            await loop.sock_sendall(conn, view[:n])


async def main(port):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    loop.add_signal_handler(signal.SIGINT, stop.set_result, None)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(1024)
    lsock.setblocking(False)

    async def accept_loop():
        while True:
            conn, _ = await loop.sock_accept(lsock)
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            loop.create_task(echo(loop, conn))

    acceptor = loop.create_task(accept_loop())
    await stop
    acceptor.cancel()
    lsock.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=19000)
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = ap.parse_args()
    if args.loop == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(main(args.port))
