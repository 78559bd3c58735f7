#!/usr/bin/env python3
"""A TCP proxy that cuts one connection after it has carried N bytes towards the server, as a dropped network
would: both sides are closed at once. It prints its port, and after every connection writes its counts (cuts,
bytes forwarded to the server) as JSON to --report.

    cutting_proxy.py --upstream 127.0.0.1:8000 --cut-after 104857600 --report stats.json
"""
import argparse
import asyncio
import json

stats = {"cuts": 0, "forwarded": 0, "connections": 0}


async def pipe(reader, writer, towards_server, args, close):
    """Copies one direction; a cut, an end or an error in either direction closes both connections at once."""
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            if towards_server:
                if stats["cuts"] < args.cuts and stats["forwarded"] + len(data) - stats["at_cut"] >= args.cut_after:
                    stats["cuts"] += 1
                    stats["at_cut"] = stats["forwarded"]
                    break
                stats["forwarded"] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        close()


async def handle(client_reader, client_writer, args):
    stats["connections"] += 1
    host, port = args.upstream.rsplit(":", 1)
    try:
        server_reader, server_writer = await asyncio.open_connection(host, int(port))
    except OSError:
        client_writer.transport.abort()
        return

    def close():
        for writer in (client_writer, server_writer):
            writer.transport.abort()

    await asyncio.gather(
        pipe(client_reader, server_writer, True, args, close),
        pipe(server_reader, client_writer, False, args, close),
    )
    with open(args.report, "w") as report:
        json.dump({k: v for k, v in stats.items() if k != "at_cut"}, report)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--cut-after", type=int, required=True, help="bytes towards the server per cut")
    parser.add_argument("--cuts", type=int, default=1, help="how many connections to cut")
    parser.add_argument("--report", required=True)
    args = parser.parse_args()
    stats["at_cut"] = 0
    server = await asyncio.start_server(lambda r, w: handle(r, w, args), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
