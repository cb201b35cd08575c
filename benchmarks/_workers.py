"""What the benchmarks that run contenders in worker processes share: one JSON line a reply.

A worker (`python -m benchmarks.<name> --worker ...`) reads one command a line on
stdin and answers each with one JSON object on one line of stdout: `reply()`. The
coordinator holds a `Worker` for each: it starts the process with both pipes, and
`ask()` writes a command and reads the answer (`answer()`). A worker that exits
without answering gets a failure answer instead, in the shape the benchmark reads
its failures in, made by the `died` function it passes from the reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

__all__ = ["Answer", "Died", "Worker", "answer", "reply"]

Answer = dict[str, Any]
Died = Callable[[str], Answer]  # why (the worker exited, with its status) -> failure answer


def reply(message: Answer) -> None:
    """In a worker: write `message` as one JSON line on stdout, at once."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def answer(stdout: IO[str], process: subprocess.Popen[str], died: Died) -> Answer:
    """The next JSON line on `stdout`, or `died(why)` once `process` exits without one."""
    line = stdout.readline()
    if not line:
        return died(f"worker exited ({process.wait()}) without an answer")
    got: Answer = json.loads(line)
    return got


class Worker:
    """A worker process, `argv` (the whole command line), started with stdin and stdout piped."""

    def __init__(self, argv: Sequence[str], died: Died) -> None:
        self.process = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.died = died

    def ask(self, command: str | None = None) -> Answer:
        """The worker's answer to `command` (None: to starting, or the one it gives unasked)."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        if command is not None:
            stdin.write(command + "\n")
            stdin.flush()
        return answer(stdout, self.process, self.died)
