"""`FakeFathom`: the emulator as one object to start, use and close."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from ._app import make_app
from ._faults import FaultKind, FaultRule, Faults
from ._ratelimit import RateLimiter
from ._reports import install_functions
from ._state import AppState
from ._store import Site, Store
from ._traffic import DemoSite, generate_demo

__all__ = ["DEMO_PAGEVIEWS", "DEMO_SEED", "FakeFathom"]

#: The demo data every entry point serves by default: `FakeFathom()`,
#: `python -m fathom_async.testing`, `fathom-async emulator` and `fathom-async
#: --emulator ...`. Defined once so that the site ids and figures a user sees in one
#: are those of the others.
DEMO_SEED = 0
DEMO_PAGEVIEWS = 20_000


class FakeFathom:
    """A local Fathom Analytics API on 127.0.0.1, backed by SQLite.

    Start it with `async with FakeFathom() as fake:` and point a client at it:
    `FathomClient(fake.token, base_url=fake.url)` (the guide's "Testing with the
    emulator" page and the pytest recipe have complete programs).

    - `seed`: makes ids, tokens, traffic and fault decisions reproducible.
    - `pageviews`: how many demo pageviews to spread over the last 90 days across
      the demo sites (`demo=False` makes no sites, events or traffic at all).
    - `enforce_rate_limits=False` switches off the hourly, per-minute and
      concurrency limits; `time_scale=60` runs every window 60 times faster (an hour
      of budget in a minute); `entity_limit`, `report_limit` and
      `report_concurrency` change the limits themselves.
    - `clock` (default: the running loop's `time()`) drives the rate limits and
      latency; `wall_clock` (default `time.time`) is "now" for timestamps, the demo
      traffic and reports.
    - `database`: a SQLite file for the traffic instead of memory.

    The data generation happens here, in the constructor, so `store` can be
    arranged before `start()`.
    """

    def __init__(
        self,
        *,
        seed: int = DEMO_SEED,
        pageviews: int = DEMO_PAGEVIEWS,
        demo: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        enforce_rate_limits: bool = True,
        time_scale: float = 1.0,
        entity_limit: int = 2000,
        report_limit: int = 10,
        report_concurrency: int = 5,
        database: str = ":memory:",
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if pageviews < 0:
            raise ValueError("pageviews must be >= 0")
        self.host = host
        self.port = port
        self._clock = clock
        self.store = Store(database=database, seed=seed, wall_clock=wall_clock)
        install_functions(self.store.db)
        self.account = self.store.add_account("Homer Simpson", "homer@example.com", id=500302232)
        self.token: str = self.store.add_token("*", name="Admin").secret
        self.demo: list[DemoSite] = (
            generate_demo(self.store, seed=seed, pageviews=pageviews, now=wall_clock())
            if demo
            else []
        )
        self.limiter = RateLimiter(
            self.now,
            time_scale=time_scale,
            entity_limit=entity_limit,
            report_limit=report_limit,
            report_concurrency=report_concurrency,
        )
        self.faults = Faults(seed)
        self.app: web.Application = make_app(
            AppState(
                store=self.store,
                limiter=self.limiter,
                faults=self.faults,
                clock=self.now,
                enforce_rate_limits=enforce_rate_limits,
            )
        )
        self._runner: web.AppRunner | None = None
        self._closed = False

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> FakeFathom:
        """Start serving; `url` is valid from now on."""
        if self._closed:
            raise RuntimeError("this FakeFathom was closed; make a new one")
        if self._runner is not None:
            return self
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self

    async def close(self) -> None:
        """Stop serving and close the database. Safe to call twice."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if not self._closed:
            self._closed = True
            self.store.close()

    async def __aenter__(self) -> FakeFathom:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --------------------------------------------------------------------- access

    def now(self) -> float:
        """The emulator's clock (the running loop's time unless one was given)."""
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    @property
    def url(self) -> str:
        """The API base URL, ending in `/v1`."""
        if self._runner is None:
            raise RuntimeError("not serving: use `async with FakeFathom()` or `await start()`")
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 in brackets
        return f"http://{host}:{self.port}/v1"

    @property
    def sites(self) -> list[Site]:
        """The demo sites, in creation order."""
        return [demo.site for demo in self.demo]

    @property
    def site_id(self) -> str:
        """The first demo site's id."""
        return self.demo[0].site.id

    def make_token(
        self, *abilities: str, name: str | None = None, account_id: int | None = None
    ) -> str:
        """A new token's secret: `make_token("read:SITE")`, `make_token("*")`, ...

        Tokens of one account share its rate limits.
        """
        return self.store.add_token(*abilities, name=name, account_id=account_id).secret

    def inject(
        self,
        route: str,
        fault: FaultKind,
        *,
        probability: float = 1.0,
        times: int | None = None,
        seconds: float = 1.0,
        retry_after: int | None = 1,
    ) -> FaultRule:
        """Inject a fault into matching requests; see `Faults.inject`."""
        return self.faults.inject(
            route,
            fault,
            probability=probability,
            times=times,
            seconds=seconds,
            retry_after=retry_after,
        )
