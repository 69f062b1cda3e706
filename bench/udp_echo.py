"""udp_bench's Python peers: a datagram echo server on asyncio or uvloop (issue 16).

Usage: python3 udp_echo.py --loop asyncio|uvloop [--host ADDR] [--port P]

Prints "listening on HOST:PORT (1 loops)" once bound, then serves until SIGTERM / SIGINT: each
datagram is sent back to its sender from datagram_received, as bench/udp_echo_server.c does.
"""
import argparse
import asyncio
import signal
import sys


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)

    def error_received(self, exc):
        pass


async def serve(host, port):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(host, port))
    bound = transport.get_extra_info("sockname")
    print("listening on %s:%d (1 loops)" % (bound[0], bound[1]), flush=True)
    stop = loop.create_future()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set_result, None)
    await stop
    transport.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=19102)
    args = ap.parse_args()
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError as e:
            print("udp_echo.py: uvloop not available: %s" % e, file=sys.stderr)
            return 1
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
