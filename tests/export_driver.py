"""Runs an export in a child process and kills it with SIGKILL at a chosen chunk.

Used by test_export_kill.py: `python -m tests.export_driver URL TOKEN DIR FROM TO K MODE`.
MODE "before" dies before the K-th chunk file is written, "after" dies after it was
renamed into place but before its journal line: the two places a crash can hit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from datetime import date
from pathlib import Path
from typing import Any

from fathom_async import FathomClient
from fathom_async.export import ExportSpec, _runner, run_export


def main() -> None:
    url, token, directory, start, end, kill_at, mode = sys.argv[1:8]
    namespace = vars(_runner)  # the runner's own reference is the one to replace
    original = namespace["write_chunk"]
    count = {"n": 0}
    lock = threading.Lock()  # chunks are written from worker threads

    def write_then_maybe_die(path: Path, rows: Any, columns: Any, fmt: str) -> str:
        with lock:
            count["n"] += 1
            mine = count["n"]
        if mine == int(kill_at) and mode == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        digest: str = original(path, rows, columns, fmt)
        if mine == int(kill_at) and mode == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return digest

    namespace["write_chunk"] = write_then_maybe_die
    spec = ExportSpec(date_from=date.fromisoformat(start), date_to=date.fromisoformat(end))

    async def run() -> None:
        async with FathomClient(token, base_url=url, rate_limits=None) as fathom:
            await run_export(fathom, spec, directory, concurrency=4)

    asyncio.run(run())


if __name__ == "__main__":
    main()
