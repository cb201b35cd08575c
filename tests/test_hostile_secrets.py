"""Functional: the token never leaks, and the transport never hands it to anyone else.

The token grep runs many calls (successes, 4xx, retried 5xx, 429s, timeouts, resets,
validation errors, a closed client) with every log level on, and then looks for the
token in every repr and str, every error's args and formatted traceback (causes
included), every log record (message, args, exc_text), the `FATHOM_LOG=debug` stderr
handler's output, and every file the CLI and the export write. The transport half:
redirects are not followed (and a second host never sees the header), TLS
verification cannot be switched off silently, plain http is loopback-only, and a
server streaming without end is cut off at `max_response_bytes`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import traceback
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses
from click.testing import CliRunner

from fathom_async import (
    APIResponseError,
    APIStatusError,
    FathomClient,
    FathomError,
    RateLimits,
    ValidationError,
    _cli,
    _logging,
)
from fathom_async.export import Export, ExportSpec
from fathom_async.testing import FakeFathom
from tests.conftest import calls
from tests.emulator_thread import emulator_thread
from tests.hostile_support import ACCOUNT, endless, loopback, no_sleep

TODAY = datetime.now(timezone.utc).date()


def leaks(text: str, *tokens: str) -> bool:
    # The emulator's tokens are "id|secret": the secret part alone is a leak too.
    return any(part in text for token in tokens for part in (token, token.split("|", 1)[-1]))


@pytest.fixture
async def fake() -> AsyncIterator[FakeFathom]:
    async with FakeFathom(seed=8, pageviews=1_000, enforce_rate_limits=False) as server:
        yield server


@pytest.fixture
def debug_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """FATHOM_LOG=debug as a fresh process would see it: the stderr handler, at DEBUG."""
    logger = logging.getLogger("fathom_async")
    handlers, level = list(logger.handlers), logger.level
    monkeypatch.setenv("FATHOM_LOG", "debug")
    monkeypatch.setattr(_logging, "_configured", False)
    yield
    for handler in logger.handlers:
        if handler not in handlers:
            logger.removeHandler(handler)
    logger.setLevel(level)


def texts_of_error(error: BaseException) -> list[str]:
    found = [str(error), repr(error), repr(error.args), repr(vars(error))]
    found += traceback.format_exception(type(error), error, error.__traceback__)
    cause = error.__cause__ or error.__context__
    while cause is not None:
        found += [str(cause), repr(cause), repr(vars(cause)) if hasattr(cause, "__dict__")
                  else ""]
        cause = cause.__cause__ or cause.__context__
    return found


def texts_of_record(record: logging.LogRecord) -> list[str]:
    formatted = logging.Formatter().format(record)  # fills exc_text from exc_info
    return [record.getMessage(), repr(record.args), record.exc_text or "", formatted]


@pytest.mark.looptime  # the 429s pause the limiter: in fake time
async def test_the_token_is_in_no_repr_error_traceback_or_log_line(
    fake: FakeFathom,
    debug_logging: None,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG, logger="fathom_async")
    token = fake.make_token("*", name="grep me")
    wrong = "9999|wrong-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    seen: list[Any] = []
    errors: list[BaseException] = []

    async def attempt(awaitable: Any) -> None:
        try:
            seen.append(await awaitable)
        except FathomError as error:
            errors.append(error)

    limits = RateLimits()
    fathom = FathomClient(token, base_url=fake.url, rate_limits=limits, max_retries=3,
                          timeout=0.05)
    fathom._shared.sleep = no_sleep
    view = fathom.with_options(priority="bulk", max_retries=0)
    async with fathom:
        seen += [fathom, view, limits, fathom.sites, fathom.events, fathom.milestones,
                 fathom.aggregations, fathom.current_visitors, fathom.account, fathom.token]
        pager = fathom.sites.list(limit=1)
        seen.append(pager)
        seen.append(await pager)
        seen += [site async for site in fathom.sites.list(limit=2)]
        await attempt(fathom.account.get())
        await attempt(fathom.token.get())
        await attempt(fathom.sites.get("NOSUCH"))
        await attempt(fathom.sites.create("Grep"))
        await attempt(fathom.events.create(fake.site_id, "Grep event"))
        await attempt(fathom.aggregations.query(entity="pageview", site_id=fake.site_id,
                                                aggregates="pageviews", field_grouping="pathname",
                                                limit=3))
        await attempt(fathom.current_visitors.get(fake.site_id, detailed=True))
        fake.inject("GET /account", "error_503", times=2)
        fake.inject("GET /token", "rate_limit", times=1, retry_after=1)
        fake.inject("POST /sites", "reset_after_commit", times=1)
        fake.inject("GET /sites", "truncated_body", times=1)
        fake.inject("GET /sites/{site_id}/events", "non_json_body", times=4)
        fake.inject("GET /sites/{site_id}/milestones", "latency", times=1, seconds=0.2)
        await attempt(fathom.account.get())
        await attempt(fathom.token.get())
        await attempt(fathom.sites.create("Maybe"))
        await attempt(fathom.sites.list())
        await attempt(view.events.list(fake.site_id))
        await attempt(view.milestones.list(fake.site_id))
        await attempt(fathom.sites.get(""))
        for bad in (lambda: fathom.sites.list(limit=0),
                    lambda: FathomClient(token + "\n"), lambda: FathomClient(""),
                    lambda: fathom.with_options(timeout=-1)):
            try:
                bad()
            except ValidationError as refused:
                errors.append(refused)
        fake.inject("GET /sites/{site_id}", "rate_limit", times=1, retry_after=3600)
        async with FathomClient(token, base_url=fake.url) as paused:  # its own limiter
            seen.append(paused)
            await attempt(paused.sites.get(fake.site_id))
        async with FathomClient(wrong, base_url=fake.url, rate_limits=None) as stranger:
            seen.append(stranger)
            await attempt(stranger.account.get())
    await attempt(fathom.account.get())  # closed
    kinds = {type(error).__name__ for error in errors}
    assert {"NotFoundError", "RateLimitError", "APIConnectionError", "APIResponseError",
            "APITimeoutError", "AuthenticationError", "ValidationError",
            "ClientClosedError"} <= kinds, kinds
    assert fathom._shared.token == token  # it was there to leak
    for thing in seen:
        assert not leaks(repr(thing) + str(thing), token), thing
    for error in errors:
        for text in texts_of_error(error):
            assert not leaks(text, token, wrong), text
    records = caplog.records
    assert any(r.levelno == logging.DEBUG for r in records)
    assert any(r.levelno == logging.WARNING for r in records)
    assert any("<redacted>" in r.getMessage() for r in records)
    for record in records:
        for text in texts_of_record(record):
            assert not leaks(text, token, wrong), text
    stderr = capsys.readouterr().err
    assert "<redacted>" in stderr  # the FATHOM_LOG handler wrote the debug lines
    assert not leaks(stderr, token)
    assert not leaks(stderr, wrong)


async def test_the_export_writes_no_token(fake: FakeFathom, tmp_path: Path) -> None:
    token = fake.make_token("*")
    spec = ExportSpec(date_from=TODAY - timedelta(days=3), date_to=TODAY)
    fake.inject("*", "error_503", probability=0.1)
    async with FathomClient(token, base_url=fake.url, rate_limits=None,
                            max_retries=20) as fathom:
        fathom._shared.sleep = no_sleep
        export = Export(fathom, spec, tmp_path)
        summary = await export.run()
        assert not leaks(repr(export), token)
        assert not leaks(repr(summary), token)
    assert_no_file_leaks(tmp_path, token, at_least=3)


def assert_no_file_leaks(directory: Path, token: str, *, at_least: int) -> None:
    files = [path for path in directory.rglob("*") if path.is_file()]
    assert len(files) >= at_least, files
    for path in files:
        assert not leaks(path.read_bytes().decode("utf-8", "replace"), token), path
        assert not leaks(str(path), token), path


# -- the command line, against an emulator in a thread -------------------------------------


def test_the_cli_prints_and_writes_no_token(tmp_path: Path) -> None:
    env = {"FATHOM_API_TOKEN": "", "FATHOM_BASE_URL": "", "FATHOM_CONFIG": "/nonexistent",
           "FATHOM_LOG": "debug"}
    runner = CliRunner()
    outputs: list[str] = []
    with emulator_thread() as (fake, token):
        site = fake.site_id
        base = ["--token", token, "--base-url", fake.url]
        commands = [
            ["sites", "list"],
            ["sites", "list", "--format", "json"],
            ["events", "list", site, "--format", "csv"],
            ["aggregate", "--site", site, "--aggregates", "pageviews", "--field-grouping",
             "pathname", "--limit", "5"],
            ["current", site, "--detailed"],
            ["aggregate", "--site", site, "--aggregates", "conversions"],  # usage error
            ["export", "--out", str(tmp_path / "export"), "--quiet", "--entities",
             "sites,events,milestones,pageviews", "--from", str(TODAY - timedelta(days=2)),
             "--to", str(TODAY)],
        ]
        codes = []
        for command in commands:
            result = runner.invoke(_cli.cli, [*base, *command], env=env)
            codes.append(result.exit_code)
            outputs += [result.stdout, result.stderr, repr(result.exception)]
        refused = runner.invoke(_cli.cli, ["--token", "1|" + "z" * 40, "--base-url", fake.url,
                                           "sites", "list"], env=env)
        outputs += [refused.stdout, refused.stderr]
        from_env = runner.invoke(_cli.cli, ["--base-url", fake.url, "sites", "list"],
                                 env={**env, "FATHOM_API_TOKEN": token})
        outputs += [from_env.stdout, from_env.stderr]
    assert codes == [0, 0, 0, 0, 0, 2, 0], outputs
    assert refused.exit_code == 1
    assert "401" in refused.stderr
    assert from_env.exit_code == 0
    for text in outputs:
        assert not leaks(text, token, "1|" + "z" * 40), text
    assert_no_file_leaks(tmp_path, token, at_least=4)
    resume = _cli._resume_command(["--token", token, "export", f"--token={token}", "--quiet"])
    assert not leaks(resume, token)
    assert "export" in resume


# -- transport -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_not_followed_and_the_token_stays_home(status: int) -> None:
    async with loopback() as home, loopback() as elsewhere:
        target = f"http://127.0.0.1:{elsewhere.port}/v1/account"
        home.script = [_redirect(status, target), _redirect(status, target)]
        async with FathomClient("home-token", base_url=home.url, rate_limits=None) as fathom:
            fathom._shared.sleep = no_sleep
            with pytest.raises(APIStatusError) as info:
                await fathom.account.get()
            with pytest.raises(APIStatusError):
                await fathom.sites.create("Acme")
    assert info.value.status_code == status
    assert "redirect" in str(info.value)
    assert "not followed" in str(info.value)
    assert str(elsewhere.port) in str(info.value)
    assert len(home.seen) == 2
    assert elsewhere.seen == []


def _redirect(status: int, location: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": location})
    return handler


async def test_the_client_never_turns_tls_verification_off(
    api: aioresponses,
) -> None:
    api.get("https://api.usefathom.com/v1/account", payload=ACCOUNT)
    async with FathomClient("t0ken", rate_limits=None) as fathom:
        await fathom.account.get()
    [(_, _, kwargs)] = calls(api)
    assert kwargs.get("ssl", True) is not False
    assert kwargs["allow_redirects"] is False


def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.mark.parametrize("connector_kwargs", [
    {"ssl": False},
    {"ssl": "unverified"},
    {"ssl": "no-hostname-check"},
], ids=["ssl-false", "cert-none", "no-hostname-check"])
async def test_a_session_without_tls_verification_is_refused(
    connector_kwargs: dict[str, Any],
) -> None:
    setting = connector_kwargs["ssl"]
    if setting == "unverified":
        setting = _unverified_context()
    elif setting == "no-hostname-check":
        setting = ssl.create_default_context()
        setting.check_hostname = False
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=setting)) as session:
        with pytest.raises(ValidationError) as info:
            FathomClient("t0ken", session=session)
        assert info.value.field == "session"
        assert "verifies TLS" in str(info.value)
        # A loopback test server may go without: nobody else can answer there.
        FathomClient("t0ken", session=session, base_url="http://127.0.0.1:8086/v1")


@pytest.mark.filterwarnings("ignore:verify_ssl is deprecated:DeprecationWarning")
async def test_the_deprecated_verify_ssl_false_is_refused_too() -> None:
    connector = aiohttp.TCPConnector(verify_ssl=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(ValidationError):
            FathomClient("t0ken", session=session)


async def test_a_verifying_session_is_accepted() -> None:
    async with aiohttp.ClientSession() as plain, aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl.create_default_context())
    ) as custom:
        FathomClient("t0ken", session=plain)
        FathomClient("t0ken", session=custom)


@pytest.mark.parametrize("base_url", [
    "http://api.usefathom.com/v1",
    "http://localhost.evil.com/v1",
    "http://127.0.0.1.nip.io/v1",
    "http://[::ffff:8.8.8.8]/v1",
    "http://127.0.0.1@evil.com/v1",
    "http://user:127.0.0.1@evil.com/v1",
    "http://evil.com#@127.0.0.1/v1",
    "http://evil.com?@127.0.0.1/v1",
    "http://10.0.0.1/v1",
    "http://0.0.0.0/v1",
    "http://2130706433/v1",
    "http://localhost:80@evil.com/v1",
    "https://127.0.0.1@evil.com/v1",
    "ws://127.0.0.1/v1",
    "file:///etc/passwd",
])
def test_plain_http_and_tricky_urls_are_refused(base_url: str) -> None:
    with pytest.raises(ValidationError) as info:
        FathomClient("t0ken", base_url=base_url)
    assert info.value.field == "base_url"


@pytest.mark.parametrize("base_url", [
    "http://127.0.0.1:8086/v1", "http://localhost:8086/v1", "http://[::1]:8086/v1",
    "http://127.5.5.5/v1", "https://api.usefathom.com/v1",
])
def test_loopback_http_and_https_are_accepted(base_url: str) -> None:
    assert FathomClient("t0ken", base_url=base_url).base_url == base_url


async def test_an_endless_body_is_cut_off_at_the_limit_without_buffering_it() -> None:
    limit = 256 * 1024
    async with loopback() as server:
        server.script = [endless(server)]
        async with FathomClient("t0ken", base_url=server.url, rate_limits=None,
                                max_retries=0, max_response_bytes=limit) as fathom:
            tracemalloc.start()
            started = time.perf_counter()
            try:
                with pytest.raises(APIResponseError, match="max_response_bytes"):
                    await fathom.account.get()
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            elapsed = time.perf_counter() - started
        for _ in range(100):  # let the server notice the closed connection
            await asyncio.sleep(0)
    assert peak < 8 * limit, f"peak {peak} bytes for a {limit}-byte limit"
    assert elapsed < 5
    # Read about the limit; the rest is at most what the kernel's socket buffers held.
    assert server.bytes_sent < limit + 32 * 1024 * 1024


async def test_a_declared_huge_body_is_refused_before_reading() -> None:
    async with loopback() as server:
        server.script = [_declared(10 * 1024 * 1024 * 1024)]
        async with FathomClient("t0ken", base_url=server.url, rate_limits=None,
                                max_retries=0) as fathom:
            with pytest.raises(APIResponseError, match="bytes is over"):
                await fathom.account.get()


def _declared(length: int) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json",
                                               "Content-Length": str(length)})
        await response.prepare(request)
        await response.write(b"{")
        return response
    return handler
