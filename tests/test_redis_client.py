"""RedisConnector: one Redis client per event loop, with timeouts, closed from any loop.

Functional tests against a real redis-server (`tests.redis_server`), a stand-in that
drops the connection instead of replying (a lost reply), a black hole that takes
connections and never answers, and a port whose handshake never completes (the
timeouts). Sockets left open are counted in /proc. Whether anything is left for the
garbage collector to close (a ResourceWarning) is checked in a fresh interpreter, so
that no other test's garbage is counted. They hold on redis-py 5 and 8 alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import sys
import threading
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
import redis.exceptions

from fathom_async import ValidationError
from fathom_async._redis_client import RedisConnector
from tests.redis_server import (
    BlackHole,
    NoHandshake,
    RedisServer,
    open_connections,
    redis_server,
    running_tls_redis,
)

__all__ = ["redis_server"]  # the fixture, for pytest

#: What a timeout may overrun on a loaded machine before we call it a hang.
SLACK = 2.0
#: How long a test waits for another thread before it fails (never reached when it works).
PATIENCE = 30.0


@pytest.fixture
def connector(redis_server: RedisServer) -> Iterator[RedisConnector]:
    made = RedisConnector(redis_server.url)
    yield made
    asyncio.run(made.aclose())  # from a loop of its own, as any later loop may
    assert open_connections(redis_server.port) == 0


@pytest.fixture(scope="module")
def tls_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_tls_redis(str(tmp_path_factory.mktemp("tls"))) as url:
        yield url


@pytest.fixture
def key() -> str:
    return f"test:connector:{uuid.uuid4().hex}"


async def _ping(connector: RedisConnector) -> bool:
    return bool(await connector.client().ping())


def _run_ping(connector: RedisConnector) -> bool:
    return asyncio.run(_ping(connector))


async def _settle() -> None:
    """Wait for every other task of the running loop (a close scheduled there)."""
    me = asyncio.current_task()
    await asyncio.gather(*(task for task in asyncio.all_tasks() if task is not me))


# -- one client per loop ---------------------------------------------------------------------


async def test_a_loop_gets_one_client_made_on_first_use_with_timeouts(
    redis_server: RedisServer,
) -> None:
    connector = RedisConnector(redis_server.url, connect_timeout=1.5, socket_timeout=2.5)
    assert open_connections(redis_server.port) == 0  # nothing before first use
    try:
        client = connector.client()
        assert connector.client() is client
        assert await client.ping()
        options = client.connection_pool.connection_kwargs
        assert options["socket_connect_timeout"] == 1.5
        assert options["socket_timeout"] == 2.5
        for error in (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            assert await _attempts(options["retry"], error) == 1  # no retries inside redis-py
        assert repr(connector) == f"RedisConnector('{redis_server.url}', clients=1)"
    finally:
        await connector.aclose()  # even on failure: the next tests count open sockets
    assert open_connections(redis_server.port) == 0


async def _attempts(retry: Any, error: type[Exception]) -> int:
    """How many times `retry` (a redis-py `Retry`) runs a call that keeps raising `error`.

    Asked through `call_with_retry()`, which redis-py 5 and 8 both have: redis-py 5 has
    no `get_retries()`, and keeps the count in a private attribute.
    """
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise error("lost")

    async def on_failure(_: Exception) -> None:
        pass

    with pytest.raises(error):
        await retry.call_with_retry(call, on_failure)
    return calls


def test_a_client_is_asked_for_inside_a_running_loop(connector: RedisConnector) -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        connector.client()


def test_successive_asyncio_runs_each_use_a_client_of_their_own(
    connector: RedisConnector, redis_server: RedisServer, key: str
) -> None:
    async def store() -> redis.asyncio.Redis:
        client = connector.client()
        await client.set(key, "stored")
        return client

    async def load() -> tuple[redis.asyncio.Redis, Any]:
        client = connector.client()
        return client, await client.get(key)

    first = asyncio.run(store())
    assert open_connections(redis_server.port) == 1  # left with the loop that ended
    second, value = asyncio.run(load())
    assert value == b"stored"
    assert second is not first
    # The second loop's client replaced the first's, whose socket was closed then.
    assert open_connections(redis_server.port) == 1
    assert repr(connector).endswith("clients=1)")


def test_threads_each_running_a_loop_share_a_connector_at_once(
    connector: RedisConnector, redis_server: RedisServer, key: str
) -> None:
    both_live = threading.Barrier(2, timeout=PATIENCE)

    def run(me: int) -> tuple[redis.asyncio.Redis, Any]:
        async def main() -> tuple[redis.asyncio.Redis, Any]:
            client = connector.client()
            await client.set(f"{key}:{me}", me)
            await asyncio.to_thread(both_live.wait)  # both loops run, each with its client
            assert connector.client() is client
            return client, await client.get(f"{key}:{1 - me}")

        return asyncio.run(main())

    with ThreadPoolExecutor(2) as pool:
        (one, read_by_one), (two, read_by_two) = pool.map(run, (0, 1))
    assert one is not two
    assert (read_by_one, read_by_two) == (b"1", b"0")
    assert open_connections(redis_server.port) == 2  # both loops ended: closed by aclose()


# -- closing ---------------------------------------------------------------------------------


async def test_aclose_closes_the_running_loops_client_and_the_connector_works_again(
    redis_server: RedisServer,
) -> None:
    connector = RedisConnector(redis_server.url)
    first = connector.client()
    assert await first.ping()
    await connector.aclose()
    assert open_connections(redis_server.port) == 0
    second = connector.client()
    assert second is not first
    assert await second.ping()
    await connector.aclose()
    assert open_connections(redis_server.port) == 0


def test_aclose_from_a_later_loop_closes_a_client_whose_loop_has_ended(
    redis_server: RedisServer,
) -> None:
    connector = RedisConnector(redis_server.url)
    assert asyncio.run(_ping(connector))
    assert open_connections(redis_server.port) == 1
    asyncio.run(connector.aclose())
    assert open_connections(redis_server.port) == 0
    assert asyncio.run(_ping(connector))  # usable again
    asyncio.run(connector.aclose())
    assert open_connections(redis_server.port) == 0


def test_aclose_hands_a_live_loops_client_to_that_loop_without_waiting(
    connector: RedisConnector, redis_server: RedisServer
) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    busy, go_on = threading.Event(), threading.Event()

    def block() -> None:  # the other loop is busy, so it cannot close anything yet
        busy.set()
        go_on.wait(PATIENCE)

    try:
        assert asyncio.run_coroutine_threadsafe(_ping(connector), loop).result(PATIENCE)
        loop.call_soon_threadsafe(block)
        assert busy.wait(PATIENCE)
        asyncio.run(connector.aclose())  # returns while that loop is blocked
        assert open_connections(redis_server.port) == 1
        go_on.set()
        asyncio.run_coroutine_threadsafe(_settle(), loop).result(PATIENCE)
        assert open_connections(redis_server.port) == 0  # closed there, by that loop
    finally:
        go_on.set()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(PATIENCE)
        loop.close()


def test_a_close_handed_to_a_loop_that_ends_first_is_finished_later(
    connector: RedisConnector, redis_server: RedisServer
) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        assert asyncio.run_coroutine_threadsafe(_ping(connector), loop).result(PATIENCE)
        loop.call_soon_threadsafe(loop.stop)  # runs before the close is handed over
        thread.join(PATIENCE)
        asyncio.run(connector.aclose())  # the close waits in a loop that no longer runs
    finally:
        loop.close()
    assert open_connections(redis_server.port) == 1
    asyncio.run(connector.aclose())  # now the loop is closed: its socket is closed here
    assert open_connections(redis_server.port) == 0


def test_a_connector_that_goes_closes_what_ended_loops_left(redis_server: RedisServer) -> None:
    connector = RedisConnector(redis_server.url)
    assert asyncio.run(_ping(connector))  # never closed
    idle = asyncio.new_event_loop()
    try:
        assert idle.run_until_complete(_ping(connector))
        asyncio.run(connector.aclose())  # handed to the idle loop, which never runs again
    finally:
        idle.close()
    assert open_connections(redis_server.port) == 1
    del connector  # (no reference cycle: it goes at once)
    assert open_connections(redis_server.port) == 0


async def test_your_own_client_is_used_as_is_and_never_closed(redis_server: RedisServer) -> None:
    own = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        connector = RedisConnector(own)
        assert connector.client() is own
        assert not connector.owns_clients
        await connector.aclose()
        assert await own.ping()
        assert repr(connector) == "RedisConnector(<client>)"
    finally:
        await own.aclose()


def test_a_client_over_tls_is_closed_without_its_loop(tls_url: str) -> None:
    connector = RedisConnector(tls_url)
    port = int(tls_url.split(":")[2].split("/")[0])
    assert asyncio.run(_ping(connector))
    assert asyncio.run(_ping(connector))  # the first loop's TLS socket was closed here
    assert open_connections(port) == 1
    asyncio.run(connector.aclose())
    assert open_connections(port) == 0


def test_nothing_is_left_for_the_garbage_collector(redis_server: RedisServer, tls_url: str) -> None:
    """Every way above of meeting loops, then a full collection, in a fresh interpreter
    (so that no other test's garbage is counted) where every warning is an error."""
    done = subprocess.run(
        [sys.executable, "-c", _RUN_EVERY_WAY, redis_server.url, tls_url],
        capture_output=True, text=True, timeout=4 * PATIENCE, cwd=Path(__file__).parents[1],
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "clean\n"


_RUN_EVERY_WAY = (
    "import sys; from tests.test_redis_client import _every_way; sys.exit(_every_way(sys.argv[1:]))"
)


def _every_way(urls: list[str]) -> int:
    """Run by the test above in its own interpreter; prints what the collector found."""
    found: list[sys.UnraisableHookArgs] = []
    sys.unraisablehook = found.append  # a finaliser's warning (an error here) lands here
    warnings.simplefilter("error")
    for url in urls:
        connector = RedisConnector(url)
        asyncio.run(_ping(connector))
        asyncio.run(_ping(connector))  # drops the first loop's client
        with ThreadPoolExecutor(2) as pool:
            assert all(pool.map(_run_ping, [connector] * 2))
        asyncio.run(connector.aclose())  # clients of loops that have ended
        for ends_first in (False, True):
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever)
            thread.start()
            assert asyncio.run_coroutine_threadsafe(_ping(connector), loop).result(PATIENCE)
            if ends_first:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(PATIENCE)
            asyncio.run(connector.aclose())  # handed over to that loop
            if not ends_first:
                asyncio.run_coroutine_threadsafe(_settle(), loop).result(PATIENCE)
                loop.call_soon_threadsafe(loop.stop)
                thread.join(PATIENCE)
            loop.close()
        asyncio.run(connector.aclose())  # finishes what the loop that ended left
        asyncio.run(_ping(connector))  # never closed: the connector goes with it
        idle = asyncio.new_event_loop()
        assert idle.run_until_complete(_ping(connector))
        asyncio.run(connector.aclose())  # handed to the idle loop, which never runs again
        idle.close()
        del connector
    gc.collect()
    for each in found:
        print(f"{each.exc_value!r} in {each.object!r}", file=sys.stderr)
    print("clean" if not found else "leaks")
    return 1 if found else 0


# -- failures reach the caller ---------------------------------------------------------------


async def test_a_command_whose_reply_was_lost_is_never_sent_again() -> None:
    """A Lua script sent again after its reply was lost could run twice: the call fails
    instead, and the next one connects afresh."""
    async with LosesFirstReply(b"EVALSHA") as server:
        connector = RedisConnector(server.url)
        try:
            client = connector.client()
            with pytest.raises(redis.exceptions.ConnectionError):
                await _run_script(client)
            assert server.received == [0]  # once, on the first connection
            assert await _run_script(client) == 1
            assert server.received == [0, 1]  # the next call, on a new connection
        finally:
            await connector.aclose()


async def _run_script(client: redis.asyncio.Redis) -> Any:
    """EVALSHA, as the rate limiter runs its script."""
    reply: Any = client.evalsha(_SHA, 0)  # typed `Awaitable[str] | str` by redis-py 5
    return await reply


_SHA = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"  # SHA1 of "return 1"


class LosesFirstReply:
    """A loopback server speaking just enough RESP to stand in for Redis, which drops
    the connection instead of answering the first `command` it receives.

    It answers `command` afterwards with `:1`, PING with PONG, and anything else (the
    HELLO, CLIENT SETINFO, SELECT that redis-py may send on connecting) with OK.
    `received` lists, for each `command` received, the number of its connection.
    """

    def __init__(self, command: bytes) -> None:
        self.command = command
        self.received: list[int] = []
        self._connections = 0
        self._handlers: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> LosesFirstReply:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._handlers)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        connection = self._connections
        self._connections += 1
        try:
            while (command := await _read_command(reader)) is not None:
                name = command[0].upper()
                if name == self.command:
                    self.received.append(connection)
                    if len(self.received) == 1:
                        break  # received, maybe run; its reply is lost with the connection
                    writer.write(b":1\r\n")
                elif name == b"PING":
                    writer.write(b"+PONG\r\n")
                else:
                    writer.write(b"+OK\r\n")
                await writer.drain()
        except ConnectionError:
            pass  # the client went first
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _read_command(reader: asyncio.StreamReader) -> list[bytes] | None:
    """One command as redis-py sends it (an array of bulk strings), or None at the end."""
    try:
        header = await reader.readline()
        if not header:
            return None
        assert header.startswith(b"*"), header
        command = []
        for _ in range(int(header[1:])):
            size = await reader.readline()
            assert size.startswith(b"$"), size
            command.append((await reader.readexactly(int(size[1:]) + 2))[:-2])
    except asyncio.IncompleteReadError:
        return None
    return command


async def test_a_redis_that_never_answers_fails_within_the_socket_timeout() -> None:
    with BlackHole() as hole:
        connector = RedisConnector(hole.url, connect_timeout=PATIENCE, socket_timeout=0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(redis.exceptions.TimeoutError, match="Timeout reading"):
            await connector.client().ping()
        assert loop.time() - started < 0.1 + SLACK
        assert hole.connections() == 1  # no retry inside redis-py
        await connector.aclose()


async def test_a_connection_that_never_opens_fails_within_the_connect_timeout() -> None:
    with NoHandshake() as port:
        connector = RedisConnector(port.url, connect_timeout=0.1, socket_timeout=PATIENCE)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(redis.exceptions.TimeoutError, match="Timeout connecting"):
            await connector.client().ping()
        assert loop.time() - started < 0.1 + SLACK
        await connector.aclose()


# -- what it accepts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url_or_client", "options", "field"),
    [
        ("", {}, "url_or_client"),
        (42, {}, "url_or_client"),
        (None, {}, "url_or_client"),
        (b"redis://127.0.0.1/0", {}, "url_or_client"),
        ("http://127.0.0.1/0", {}, "url_or_client"),
        ("127.0.0.1:6379", {}, "url_or_client"),
        ("redis://127.0.0.1:port/0", {}, "url_or_client"),
        ("redis://127.0.0.1/0?socket_timeout=soon", {}, "url_or_client"),
        ("redis://127.0.0.1/0", {"connect_timeout": 0}, "connect_timeout"),
        ("redis://127.0.0.1/0", {"connect_timeout": float("inf")}, "connect_timeout"),
        ("redis://127.0.0.1/0", {"socket_timeout": -1}, "socket_timeout"),
        ("redis://127.0.0.1/0", {"socket_timeout": float("nan")}, "socket_timeout"),
        ("redis://127.0.0.1/0", {"socket_timeout": True}, "socket_timeout"),
        ("redis://127.0.0.1/0", {"socket_timeout": "5"}, "socket_timeout"),
    ],
)
def test_bad_input_is_rejected_with_the_argument_named(
    url_or_client: Any, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        RedisConnector(url_or_client, **options)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:s3cret@127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/0?password=s3cret",
        "unix://:s3cret@/run/redis.sock?db=1",
        "http://:s3cret@127.0.0.1/0",
        "redis://:s3cret@127.0.0.1:port/0",
        "redis://:s3cret@127.0.0.1/0?db=first",
        "redis//:s3cret@127.0.0.1/0",
        "redis:s3cret@127.0.0.1",
        "redis://:s3cret@[::1/0",
    ],
)
def test_a_password_never_shows_in_a_repr_or_an_error(url: str) -> None:
    try:
        shown = repr(RedisConnector(url))
    except ValidationError as exc:
        shown = f"{exc} {exc.value!r}"
    assert "s3cret" not in shown


def test_a_missing_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"pip install 'fathom-async\[redis\]'"):
        RedisConnector("redis://127.0.0.1:1/0")
