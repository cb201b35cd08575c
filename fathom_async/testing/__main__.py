"""`python -m fathom_async.testing`: serve the emulator until Ctrl-C.

Prints the base URL, an admin token and the demo sites, then serves until
interrupted (SIGINT or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from ._fake import DEMO_PAGEVIEWS, DEMO_SEED, FakeFathom

__all__ = ["main", "parse_args", "serve"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fathom_async.testing",
        description="Serve a local Fathom Analytics API with seeded demo data.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8086, help="port (8086; 0 picks a free one)")
    parser.add_argument(
        "--seed", type=int, default=DEMO_SEED, help=f"seed for ids and traffic ({DEMO_SEED})"
    )
    parser.add_argument(
        "--pageviews",
        type=int,
        default=DEMO_PAGEVIEWS,
        help=f"demo pageviews over 90 days ({DEMO_PAGEVIEWS})",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="run rate-limit windows this many times faster (1; 60 = an hour in a minute)",
    )
    parser.add_argument("--no-rate-limits", action="store_true", help="do not enforce rate limits")
    parser.add_argument("--database", default=":memory:", help="SQLite file for the traffic")
    return parser.parse_args(argv)


async def serve(options: argparse.Namespace, stop: asyncio.Event) -> None:
    """Serve until `stop` is set, printing where and with which token."""
    fake = FakeFathom(
        seed=options.seed,
        pageviews=options.pageviews,
        host=options.host,
        port=options.port,
        time_scale=options.time_scale,
        enforce_rate_limits=not options.no_rate_limits,
        database=options.database,
    )
    async with fake:
        print(f"Fake Fathom API at {fake.url}")
        print(f"Admin token: {fake.token}")
        for demo in fake.demo:
            print(f"Site {demo.site.id}: {demo.site.name} (events: {', '.join(demo.event_ids)})")
        print("Press Ctrl-C to stop.", flush=True)
        await stop.wait()


async def _main(options: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(options, stop)


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(_main(parse_args(argv)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
