"""A real `redis-server` on a free loopback port, and a worker process that hammers it.

`RedisServer` starts `redis-server --port P --save '' --appendonly no` (no data
survives a kill, as a restart without persistence), waits until it answers PING, and
can be killed with SIGKILL and started again on the same port. It never skips: when
`redis-server` is missing it raises, and the fixture fails with how to install it.

`python -m tests.redis_server worker URL KEY LIMIT PERIOD COUNT CONCURRENCY START [MODE]`
runs one asyncio loop that acquires COUNT permits of the "entity" bucket with
CONCURRENCY tasks from wall time START on, and prints one JSON line: the Redis time of
every grant, the wall time at which each permit was handed over, the errors raised
while Redis was away, and `stats()`. The benchmark uses it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

DEBIAN_PATH = "/usr/bin/redis-server"


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or (DEBIAN_PATH if os.path.exists(DEBIAN_PATH) else None)
    if found is None:
        raise RuntimeError(
            "redis-server is not installed: the Redis backend's tests need a real server"
            " (apt-get install redis-server; the README's test command installs it)"
        )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process on 127.0.0.1; `kill()` and `start()` again at will."""

    def __init__(self, port: int | None = None) -> None:
        self.binary = redis_server_binary()
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--protected-mode", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING on port {self.port}")
            time.sleep(0.01)  # the server is starting: a real process, a real wait

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server dies at once and its data with it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
        self._reap()

    def _reap(self) -> None:
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


class BlackHole:
    """A loopback port that takes connections and never answers: a Redis gone silent.

    The kernel completes each handshake into the listening socket's backlog and keeps
    what is sent; nothing is ever read or answered, so a client waits until its socket
    timeout. No thread: `connections()` accepts (and closes) what has arrived so far.
    """

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self.port: int = self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def connections(self) -> int:
        """How many connections were made since the last call (closed ones count too)."""
        count = 0
        self._socket.setblocking(False)
        try:
            while True:
                try:
                    accepted, _ = self._socket.accept()
                except BlockingIOError:
                    return count
                accepted.close()
                count += 1
        finally:
            self._socket.setblocking(True)

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class NoHandshake:
    """A loopback port where `connect()` hangs: its listen queue is full and never read.

    Linux drops a SYN to a listening socket whose accept queue is full, so the client
    retransmits until its connect timeout. The queue (backlog 0: room for one) is
    filled from here before the test connects.
    """

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(0)
        self.port: int = self._socket.getsockname()[1]
        self._fillers: list[socket.socket] = []
        for _ in range(2):  # the first fills the queue; the second is sure to hang
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", self.port))
            self._fillers.append(filler)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        for filler in self._fillers:
            filler.close()
        self._socket.close()

    def __enter__(self) -> NoHandshake:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def running_tls_redis(directory: str) -> Iterator[str]:
    """A redis-server speaking TLS only, with a self-signed certificate made by `openssl`
    in `directory`; yields its `rediss://` URL (certificates not checked)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed: the TLS test needs it to make a certificate")
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-keyout", key, "-out", cert,
        ],
        check=True, capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            redis_server_binary(), "--port", "0", "--tls-port", str(port),
            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory,
            "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert,
            "--tls-auth-clients", "no",
        ],
        stdout=subprocess.PIPE, text=True,
    )
    assert server.stdout is not None
    try:
        for line in server.stdout:  # blocks until the server says it is ready
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError("redis-server did not start with TLS (built without it?)")
        yield f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none"
    finally:
        server.terminate()
        server.wait()
        server.stdout.close()


def open_connections(port: int) -> int:
    """How many TCP sockets this process holds open to `port` (Linux: /proc)."""
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # an fd closed while we look
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                ours.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[9] in ours:
                    count += 1
    return count


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for the module; the test fails (never skips) without one."""
    try:
        server = RedisServer()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- the worker process -----------------------------------------------------------------


def worker_command(
    url: str,
    key: str,
    limit: int,
    period: float,
    count: int,
    concurrency: int,
    start: float,
    mode: str = "fail",
) -> list[str]:
    return [
        sys.executable, "-m", "tests.redis_server", "worker", url, key, str(limit),
        str(period), str(count), str(concurrency), repr(start), mode,
    ]


async def _work(
    url: str, key: str, limit: int, period: float, count: int, concurrency: int, start: float,
    mode: str,
) -> dict[str, Any]:
    from fathom_async._redis import RateLimiterUnavailableError, RedisRateLimits

    grants: list[float] = []
    handed: list[float] = []
    errors: list[float] = []
    left = count
    await asyncio.sleep(max(start - time.time(), 0.0))
    async with RedisRateLimits(
        url,
        key=key,
        entity=(limit, period),
        max_in_flight={"entity": None},
        on_unavailable=mode,  # type: ignore[arg-type]
        retry_interval=0.05,
        connect_timeout=0.5,
    ) as limits:

        async def one() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                while True:
                    try:
                        permit = await limits.acquire("entity")
                    except RateLimiterUnavailableError:
                        errors.append(time.time())
                        await asyncio.sleep(0.05)  # Redis is down: try again shortly
                        continue
                    break
                handed.append(time.time())
                grants.append(permit.granted_at)
                permit.release()

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await asyncio.gather(*(one() for _ in range(concurrency)))
        stats = limits.stats()
    return {
        "grants": grants,
        "handed": handed,
        "errors": errors,
        "warnings": [str(w.message) for w in caught if w.category is RuntimeWarning],
        "stats": stats,
    }


def main(argv: Sequence[str]) -> int:
    if len(argv) < 8 or argv[0] != "worker":
        print(__doc__, file=sys.stderr)
        return 2
    url, key = argv[1], argv[2]
    limit, period, count, concurrency = int(argv[3]), float(argv[4]), int(argv[5]), int(argv[6])
    start = float(argv[7])
    mode = argv[8] if len(argv) > 8 else "fail"
    result = asyncio.run(_work(url, key, limit, period, count, concurrency, start, mode))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
