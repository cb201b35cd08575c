"""Functional: several processes share one budget on a real redis-server.

Each worker is a separate process (`python -m tests.redis_server worker ...`) with
its own event loop and connection; it records the Redis time of every grant (from
`Permit.granted_at`, so no clock of ours is involved) and the wall time at which the
permit was handed over. The limit is compressed to 20 per second, and each test runs
for about three seconds of real time: waiting for Redis's clock is what is tested.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fathom_async import _cli
from fathom_async import _redis as redis_module
from fathom_async._redis import RedisRateLimits
from tests.redis_server import RedisServer, redis_server, worker_command
from tests.test_scheduler import max_in_any_window

__all__ = ["redis_server"]  # the fixture, for pytest

LIMIT, PERIOD = 20, 1.0
WORKERS, EACH, CONCURRENCY = 4, 20, 4  # 80 grants: a burst of 20, then 3 s at 20/s


def start_workers(
    server: RedisServer, key: str, mode: str = "fail", each: int = EACH
) -> tuple[float, list[Any]]:
    start = time.time() + 1.5  # time for the interpreters to start and import
    processes = [
        subprocess.Popen(
            worker_command(server.url, key, LIMIT, PERIOD, each, CONCURRENCY, start, mode),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(WORKERS)
    ]
    return start, processes


def wait_for_turns(server: RedisServer, key: str) -> None:
    """Until the first burst is out and the next slots are 0.1 s away.

    Then the workers hold turns that fall due in the next moment, so an outage that
    starts now is met by every worker that wakes for its turn. Waiting on Redis's own
    state and clock, not on a guess of how long interpreters take to start, keeps the
    restart tests honest on a loaded machine.
    """
    import redis

    client = redis.Redis.from_url(server.url)
    grants = f"fathom_async:{{{key}}}:entity:grants"
    try:
        deadline = time.monotonic() + 60
        while True:
            count: Any = client.zcard(grants)  # a sync client: an int (typed loosely)
            if count >= LIMIT:
                break
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.01)
        oldest: Any = client.zrange(grants, 0, 0, withscores=True)
        first = float(oldest[0][1]) / 1e6
        now: Any = client.time()
        seconds, micros = now
        time.sleep(max(first + PERIOD - 0.1 - (seconds + micros / 1e6), 0))
    finally:
        client.close()


def results_of(processes: Sequence[subprocess.Popen[bytes]]) -> list[dict[str, Any]]:
    results = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()
        results.append(json.loads(out))
    return results


def max_in_windows_from(times: Sequence[float], start: float) -> int:
    """The most grants in any window [t_i, t_i + PERIOD) with t_i >= start."""
    later = sorted(t for t in times if t >= start)
    return max_in_any_window(later, PERIOD)


def utilisation(times: Sequence[float]) -> float:
    """Grants after the first burst over what the limit allowed in that time."""
    return (len(times) - LIMIT) / (LIMIT / PERIOD * (max(times) - min(times)))


def test_four_processes_never_exceed_the_limit_in_any_window_and_use_97_percent(
    redis_server: RedisServer,
) -> None:
    _, processes = start_workers(redis_server, uuid.uuid4().hex)
    results = results_of(processes)
    grants = [t for r in results for t in r["grants"]]
    assert len(grants) == WORKERS * EACH
    assert max_in_any_window(grants, PERIOD) == LIMIT
    assert utilisation(grants) >= 0.97
    for result in results:  # a permit is never handed over before its grant time
        assert all(h >= g - 1e-6 for h, g in zip(result["handed"], result["grants"], strict=False))
    round_trips = sum(r["stats"]["round_trips"] for r in results)
    assert round_trips / len(grants) <= 2


def test_a_redis_restart_fails_closed_while_down_and_resumes_with_the_history(
    redis_server: RedisServer,
) -> None:
    key = uuid.uuid4().hex
    # More work each than one burst holds: whoever took the burst is still at work
    # after the restart, with a history to re-seed.
    each = 2 * EACH
    _, processes = start_workers(redis_server, key, each=each)
    wait_for_turns(redis_server, key)
    killed = time.time()
    redis_server.kill()
    time.sleep(0.5)  # Redis is down: the workers must raise, not send
    restarting = time.time()  # from here the server may answer before start() returns
    redis_server.start()
    restarted = time.time()
    results = results_of(processes)
    grants = [t for r in results for t in r["grants"]]
    errors = [t for r in results for t in r["errors"]]
    assert len(grants) == WORKERS * each  # no request lost
    assert errors
    late = [round(t - restarted, 3) for t in errors if not killed <= t <= restarted + 0.2]
    assert not late, f"errors after Redis was back: {late}"
    assert not any(killed + 0.01 < t < restarting for t in grants)  # fail closed
    assert sum(r["stats"]["reseeds"] for r in results) >= 1
    # Documented: only the window holding the restart may exceed the limit, by at
    # most `limit`; windows after every worker re-seeded are exact.
    assert max_in_any_window(grants, PERIOD) <= 2 * LIMIT
    assert max_in_windows_from(grants, restarted + 0.3) <= LIMIT


def test_a_redis_restart_falls_back_to_local_limits_with_a_warning(
    redis_server: RedisServer,
) -> None:
    each = 2 * EACH  # enough work left to come back to Redis after the restart
    key = uuid.uuid4().hex
    _, processes = start_workers(redis_server, key, mode="local", each=each)
    wait_for_turns(redis_server, key)
    redis_server.kill()
    time.sleep(0.5)
    redis_server.start()
    restarted = time.time()
    results = results_of(processes)
    grants = [t for r in results for t in r["grants"]]
    assert len(grants) == WORKERS * each
    assert not any(r["errors"] for r in results)
    warned = [r for r in results if r["warnings"]]
    local = sum(r["stats"]["local_grants"] for r in results)
    # Every worker that had to fall back warned once; all came back to Redis.
    assert local > 0
    assert all(len(r["warnings"]) == 1 for r in warned)
    assert all(r["stats"]["grants"] > 0 for r in results)
    # Documented: apart, each process keeps the limit alone; back, the window is
    # shared again and counts the grants made apart.
    assert max_in_any_window(grants, PERIOD) <= WORKERS * LIMIT
    assert max_in_windows_from(grants, restarted + 0.3) <= LIMIT


# -- from the command line ----------------------------------------------------------------


def run_cli(*args: str) -> Result:
    environment = {"FATHOM_API_TOKEN": "", "FATHOM_BASE_URL": "", "FATHOM_CONFIG": "/nonexistent",
                   "FATHOM_REDIS_URL": ""}
    return CliRunner().invoke(_cli.cli, list(args), env=environment, catch_exceptions=False)


@pytest.mark.parametrize(("option", "reserve"), [([], 0), (["--reserve-reports", "2"], 2)])
def test_the_command_line_shares_the_reserve_it_is_given(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, option: list[str], reserve: int
) -> None:
    made: list[RedisRateLimits] = []

    class Recording(RedisRateLimits):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(redis_module, "RedisRateLimits", Recording)
    result = run_cli("--emulator", "--demo-pageviews", "100", "--redis-url", redis_server.url,
                     "--limiter-key", uuid.uuid4().hex, *option, "sites", "list")
    assert result.exit_code == 0, result.output
    assert [limits.reserve for limits in made] == [{"entity": 0, "reports": reserve}]


@pytest.mark.parametrize("value", ["-1", "10", "two"])
def test_a_reserve_the_reports_limit_cannot_hold_is_a_usage_error(
    redis_server: RedisServer, value: str
) -> None:
    result = run_cli("--emulator", "--redis-url", redis_server.url, "--reserve-reports", value,
                     "sites", "list")
    assert result.exit_code == 2
    assert "--reserve-reports" in result.stderr


def test_a_reserve_without_redis_is_a_usage_error() -> None:
    result = run_cli("--emulator", "--reserve-reports", "2", "sites", "list")
    assert result.exit_code == 2
    assert "--redis-url" in result.stderr
