"""The emulator's state: accounts, tokens, sites, events, milestones, traffic, requests.

Entities live in plain Python objects (tests arrange and inspect them directly);
traffic (pageviews and event completions) lives in SQLite, where the aggregation
module queries it. Everything the client did is kept here too: `requests` (every
request received) and `created` (every object created through the API).

This module knows nothing of HTTP: it never validates API input nor shapes errors.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import string
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Union

__all__ = [
    "COMPLETION_COLUMNS",
    "PAGEVIEW_COLUMNS",
    "Account",
    "Completion",
    "Event",
    "Milestone",
    "Pageview",
    "RecordedRequest",
    "Site",
    "Store",
    "Token",
    "format_timestamp",
]

Sharing = Literal["none", "private", "public"]
MultiDomainOption = Literal["combined", "separate"]
Created = Union["Site", "Event", "Milestone"]

_SITE_ID_ALPHABET = string.ascii_uppercase + string.digits
_TOKEN_ALPHABET = string.ascii_letters + string.digits


def format_timestamp(epoch: float) -> str:
    """`"YYYY-MM-DD HH:MM:SS"` in UTC, the API's timestamp format."""
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _epoch(value: datetime | str | float) -> int:
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        value = datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp())


@dataclass
class Account:
    """The Fathom user who owns sites and tokens; rate limits are counted per account."""

    id: int
    name: str
    email: str | None = None

    def to_api(self) -> dict[str, Any]:
        """This account as the API's JSON answers it."""
        body: dict[str, Any] = {"id": self.id, "object": "account", "name": self.name}
        if self.email is not None:
            body["email"] = self.email
        return body


@dataclass
class Token:
    """An API token: its secret (the bearer string), owner and abilities."""

    id: int
    secret: str
    account_id: int
    abilities: tuple[str, ...]
    name: str
    created_at: str
    last_used_at: str | None = None

    def to_api(self) -> dict[str, Any]:
        """This token as `GET /token` answers it (never the secret)."""
        return {
            "id": self.id,
            "object": "token",
            "name": self.name,
            "abilities": list(self.abilities),
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
        }


@dataclass
class Site:
    """A site as the emulator stores it (with its account and share password)."""

    id: str
    account_id: int
    name: str
    created_at: str
    sharing: Sharing = "none"
    share_password: str | None = None
    timezone: str | None = None
    multi_domain: bool | None = None
    multi_domain_option: MultiDomainOption | None = None
    seq: int = 0

    def to_api(self) -> dict[str, Any]:
        """This site as the API's JSON answers it (never the share password)."""
        body: dict[str, Any] = {
            "id": self.id,
            "object": "site",
            "name": self.name,
            "sharing": self.sharing,
            "created_at": self.created_at,
        }
        if self.timezone is not None:
            body["timezone"] = self.timezone
        if self.multi_domain is not None:
            body["multi_domain"] = self.multi_domain
        if self.multi_domain_option is not None and self.multi_domain:
            body["multi_domain_option"] = self.multi_domain_option
        return body


@dataclass
class Event:
    """An event as the emulator stores it."""

    id: str
    site_id: str
    name: str
    created_at: str
    currency: str = "dollar"
    seq: int = 0

    def to_api(self, *, with_currency: bool = False) -> dict[str, Any]:
        """The API's shape; `currency` is only filled on create and update answers."""
        return {
            "id": self.id,
            "object": "event",
            "name": self.name,
            "currency": self.currency if with_currency else None,
            "created_at": self.created_at,
        }


@dataclass
class Milestone:
    """A milestone as the emulator stores it."""

    id: str
    site_id: str
    name: str
    milestone_date: str
    created_at: str
    seq: int = 0

    def to_api(self) -> dict[str, Any]:
        """This milestone as the API's JSON answers it."""
        return {
            "id": self.id,
            "object": "milestone",
            "name": self.name,
            "milestone_date": self.milestone_date,
            "created_at": self.created_at,
        }


@dataclass
class RecordedRequest:
    """One request as the emulator received it, and how it ended.

    `status` is None when no response was sent (the connection was dropped);
    `faults` names the faults injected into it.
    """

    method: str
    path: str
    route: str | None
    query: dict[str, str]
    headers: dict[str, str]
    time: float
    body: dict[str, Any] | None = None
    account_id: int | None = None
    status: int | None = None
    faults: list[str] = field(default_factory=list)


# Dimensions shared by pageviews and completions, in column order.
_DIMENSIONS = (
    "hostname",
    "domain",
    "pathname",
    "referrer_hostname",
    "referrer_pathname",
    "referrer_source",
    "browser",
    "country_code",
    "city",
    "state",
    "region",
    "device_type",
    "operating_system",
    "utm_campaign",
    "utm_content",
    "utm_medium",
    "utm_source",
    "utm_term",
    "keyword",
    "ref",
)

PAGEVIEW_COLUMNS = (
    "site_id",
    "ts",
    "session_id",
    "is_entry",
    "is_exit",
    "is_unique",
    "bounce",
    "duration",
    "entry_page",
    "exit_page",
    *_DIMENSIONS,
)
COMPLETION_COLUMNS = ("site_id", "event_id", "ts", "session_id", "is_unique", "value", *_DIMENSIONS)

_INTEGER_COLUMNS = frozenset(
    {"ts", "session_id", "is_entry", "is_exit", "is_unique", "bounce", "duration", "value"}
)


def _table(name: str, columns: tuple[str, ...]) -> str:
    defs = ",\n".join(
        f"  {c} INTEGER NOT NULL" if c in _INTEGER_COLUMNS else f"  {c} TEXT NOT NULL DEFAULT ''"
        for c in columns
    )
    return f"CREATE TABLE {name} (\n  id INTEGER PRIMARY KEY,\n{defs}\n)"


_SCHEMA = (
    "DROP TABLE IF EXISTS pageviews",
    "DROP TABLE IF EXISTS completions",
    _table("pageviews", PAGEVIEW_COLUMNS),
    _table("completions", COMPLETION_COLUMNS),
)
# Every report is scoped to one site (or event) and a time range.
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS pageviews_site_ts ON pageviews (site_id, ts)",
    "CREATE INDEX IF NOT EXISTS completions_event_ts ON completions (event_id, ts)",
)
_DROP_INDEXES = (
    "DROP INDEX IF EXISTS pageviews_site_ts",
    "DROP INDEX IF EXISTS completions_event_ts",
)


@dataclass(frozen=True, kw_only=True)
class Pageview:
    """One pageview to store with `Store.add_pageviews`.

    By default each pageview is a visit of its own (a new session that enters,
    exits and bounces on this page). Give several pageviews the same `session_id`
    and set the flags to build longer visits: `entry` marks the first pageview of a
    visit, `unique` the first view of this pathname in the visit, `duration` is the
    time spent on the page in seconds and `bounce` belongs on the entry pageview.
    """

    site_id: str
    timestamp: datetime | str | float
    pathname: str = "/"
    hostname: str = "https://example.com"
    session_id: int | None = None
    entry: bool = True
    exit: bool = True
    unique: bool = True
    bounce: bool | None = None
    duration: int = 0
    entry_page: str | None = None
    exit_page: str | None = None
    referrer_hostname: str = ""
    referrer_pathname: str = ""
    referrer_source: str = ""
    browser: str = ""
    country_code: str = ""
    city: str = ""
    state: str = ""
    region: str = ""
    device_type: str = ""
    operating_system: str = ""
    utm_campaign: str = ""
    utm_content: str = ""
    utm_medium: str = ""
    utm_source: str = ""
    utm_term: str = ""
    keyword: str = ""
    ref: str = ""


@dataclass(frozen=True, kw_only=True)
class Completion:
    """One event completion to store with `Store.add_completions` (`value` in cents)."""

    site_id: str
    event_id: str
    timestamp: datetime | str | float
    value: int = 0
    session_id: int | None = None
    unique: bool = True
    pathname: str = "/"
    hostname: str = "https://example.com"
    referrer_hostname: str = ""
    referrer_pathname: str = ""
    referrer_source: str = ""
    browser: str = ""
    country_code: str = ""
    city: str = ""
    state: str = ""
    region: str = ""
    device_type: str = ""
    operating_system: str = ""
    utm_campaign: str = ""
    utm_content: str = ""
    utm_medium: str = ""
    utm_source: str = ""
    utm_term: str = ""
    keyword: str = ""
    ref: str = ""


def domain_of(hostname: str) -> str:
    """`https://www.example.com` -> `www.example.com` (the `domain` filter's value)."""
    return hostname.split("://", 1)[-1]


class Store:
    """Everything the emulator knows; arrange data here and inspect what happened.

    `database` is a SQLite path (`":memory:"` by default); an existing file's traffic
    tables are replaced. `wall_clock` gives the current UNIX time, used for
    `created_at` and for what "now" means in reports.
    """

    def __init__(
        self,
        *,
        database: str = ":memory:",
        seed: int = 0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.wall_clock = wall_clock
        self.accounts: dict[int, Account] = {}
        self.tokens: dict[str, Token] = {}
        self.sites: dict[str, Site] = {}
        self.events: dict[str, Event] = {}
        self.milestones: dict[str, Milestone] = {}
        self.requests: list[RecordedRequest] = []
        self.created: list[Created] = []
        self._rng = random.Random(seed)
        self._seq = 0
        self._next_session = 1
        self.db = sqlite3.connect(database)
        for statement in (*_SCHEMA, *_INDEXES):
            self.db.execute(statement)
        self.db.commit()

    def close(self) -> None:
        """Close the SQLite database; the store cannot be used afterwards."""
        self.db.close()

    # ------------------------------------------------------------------ entities

    def now(self) -> str:
        """The wall clock's now as an API timestamp (`YYYY-MM-DD HH:MM:SS`, UTC)."""
        return format_timestamp(self.wall_clock())

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _code(self, alphabet: str, length: int, taken: Mapping[str, object]) -> str:
        while True:
            code = "".join(self._rng.choice(alphabet) for _ in range(length))
            if code not in taken:
                return code

    def default_account(self) -> Account:
        """The first account: where sites go when no account is named."""
        return next(iter(self.accounts.values()))

    def add_account(self, name: str, email: str | None = None, *, id: int | None = None) -> Account:
        """Add an account (`id` random from the seed unless given); returns it."""
        if id is None:
            id = self._rng.randrange(100_000_000, 999_999_999)
        account = Account(id=id, name=name, email=email)
        self.accounts[id] = account
        return account

    def add_token(
        self, *abilities: str, account_id: int | None = None, name: str | None = None
    ) -> Token:
        """A new token with these abilities (`*`, `all-sites-readonly`, `read:ID`,
        `manage:ID`) for the account (the first one by default)."""
        for ability in abilities:
            kind, _, site_id = ability.partition(":")
            if ability not in ("*", "all-sites-readonly") and not (
                kind in ("read", "manage") and site_id
            ):
                raise ValueError(
                    f"unknown token ability {ability!r}: use '*', 'all-sites-readonly',"
                    " 'read:SITE_ID' or 'manage:SITE_ID'"
                )
        if not abilities:
            raise ValueError("a token needs at least one ability")
        owner = self.accounts[account_id] if account_id is not None else self.default_account()
        token_id = len(self.tokens) + 1
        secret = f"{token_id}|" + "".join(self._rng.choice(_TOKEN_ALPHABET) for _ in range(40))
        token = Token(
            id=token_id,
            secret=secret,
            account_id=owner.id,
            abilities=tuple(abilities),
            name=name or " ".join(abilities),
            created_at=self.now(),
        )
        self.tokens[secret] = token
        return token

    def add_site(
        self,
        name: str,
        *,
        id: str | None = None,
        account_id: int | None = None,
        sharing: Sharing = "none",
        share_password: str | None = None,
        timezone: str | None = None,
        multi_domain: bool | None = None,
        multi_domain_option: MultiDomainOption | None = None,
        created_at: str | None = None,
    ) -> Site:
        """Add a site (`id` a fresh 6-letter code unless given); returns it."""
        site = Site(
            id=id or self._code(_SITE_ID_ALPHABET, 6, self.sites),
            account_id=account_id if account_id is not None else self.default_account().id,
            name=name,
            created_at=created_at or self.now(),
            sharing=sharing,
            share_password=share_password,
            timezone=timezone,
            multi_domain=multi_domain,
            multi_domain_option=multi_domain_option,
            seq=self._next_seq(),
        )
        self.sites[site.id] = site
        return site

    def add_event(
        self,
        site_id: str,
        name: str,
        *,
        id: str | None = None,
        currency: str = "dollar",
        created_at: str | None = None,
    ) -> Event:
        """Add an event to a site (`id` a fresh 8-letter code unless given); returns it."""
        if site_id not in self.sites:
            raise KeyError(f"no site {site_id!r}")
        event = Event(
            id=id or self._code(string.ascii_uppercase, 8, self.events),
            site_id=site_id,
            name=name,
            created_at=created_at or self.now(),
            currency=currency,
            seq=self._next_seq(),
        )
        self.events[event.id] = event
        return event

    def add_milestone(self, site_id: str, name: str, milestone_date: str) -> Milestone:
        """Add a milestone to a site, with a fresh UUID; returns it."""
        if site_id not in self.sites:
            raise KeyError(f"no site {site_id!r}")
        milestone = Milestone(
            id=str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
            site_id=site_id,
            name=name,
            milestone_date=milestone_date,
            created_at=self.now(),
            seq=self._next_seq(),
        )
        self.milestones[milestone.id] = milestone
        return milestone

    def delete_site(self, site_id: str) -> None:
        """Remove a site with its events and milestones (its stored traffic is kept)."""
        del self.sites[site_id]
        for event in [e for e in self.events.values() if e.site_id == site_id]:
            del self.events[event.id]
        for milestone in [m for m in self.milestones.values() if m.site_id == site_id]:
            del self.milestones[milestone.id]

    def site_events(self, site_id: str) -> list[Event]:
        """The events of one site, in the order they were added."""
        return [e for e in self.events.values() if e.site_id == site_id]

    def site_milestones(self, site_id: str) -> list[Milestone]:
        """The milestones of one site, in the order they were added."""
        return [m for m in self.milestones.values() if m.site_id == site_id]

    # ------------------------------------------------------------------- traffic

    def new_session_id(self) -> int:
        """A session id not used yet, for pageviews of one visit."""
        session_id = self._next_session
        self._next_session += 1
        return session_id

    def add_pageviews(self, pageviews: Iterable[Pageview]) -> int:
        """Store these pageviews; returns how many were stored."""
        rows = []
        for pv in pageviews:
            session_id = pv.session_id if pv.session_id is not None else self.new_session_id()
            self._next_session = max(self._next_session, session_id + 1)
            bounce = pv.entry and pv.exit if pv.bounce is None else pv.bounce
            rows.append(
                (
                    pv.site_id,
                    _epoch(pv.timestamp),
                    session_id,
                    int(pv.entry),
                    int(pv.exit),
                    int(pv.unique),
                    int(bounce),
                    pv.duration,
                    pv.entry_page if pv.entry_page is not None else pv.pathname,
                    pv.exit_page if pv.exit_page is not None else pv.pathname,
                    *_dimensions(pv),
                )
            )
        self.insert_pageview_rows(rows)
        return len(rows)

    def add_completions(self, completions: Iterable[Completion]) -> int:
        """Store these event completions; returns how many were stored."""
        rows = []
        for c in completions:
            session_id = c.session_id if c.session_id is not None else self.new_session_id()
            self._next_session = max(self._next_session, session_id + 1)
            rows.append(
                (
                    c.site_id,
                    c.event_id,
                    _epoch(c.timestamp),
                    session_id,
                    int(c.unique),
                    c.value,
                    *_dimensions(c),
                )
            )
        self.insert_completion_rows(rows)
        return len(rows)

    def insert_pageview_rows(self, rows: Iterable[tuple[object, ...]]) -> None:
        """Bulk insert raw rows in `PAGEVIEW_COLUMNS` order (the generator's fast path)."""
        self._insert("pageviews", PAGEVIEW_COLUMNS, rows)

    def insert_completion_rows(self, rows: Iterable[tuple[object, ...]]) -> None:
        """Bulk insert raw rows in `COMPLETION_COLUMNS` order."""
        self._insert("completions", COMPLETION_COLUMNS, rows)

    def _insert(
        self, table: str, columns: tuple[str, ...], rows: Iterable[tuple[object, ...]]
    ) -> None:
        marks = ", ".join("?" * len(columns))
        with self.db:
            self.db.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
            )

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Insert many rows faster: the indexes are rebuilt once, at the end."""
        for statement in _DROP_INDEXES:
            self.db.execute(statement)
        try:
            yield
        finally:
            for statement in _INDEXES:
                self.db.execute(statement)
            self.db.commit()

    def clear_traffic(self, site_id: str | None = None) -> None:
        """Forget stored pageviews and completions (of one site, or all)."""
        with self.db:
            for table in ("pageviews", "completions"):
                if site_id is None:
                    self.db.execute(f"DELETE FROM {table}")
                else:
                    self.db.execute(f"DELETE FROM {table} WHERE site_id = ?", (site_id,))

    def count_pageviews(self, site_id: str | None = None) -> int:
        """How many pageviews are stored (of one site, or all)."""
        return self._count("pageviews", site_id)

    def count_completions(self, site_id: str | None = None) -> int:
        """How many event completions are stored (of one site, or all)."""
        return self._count("completions", site_id)

    def _count(self, table: str, site_id: str | None) -> int:
        if site_id is None:
            row = self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        else:
            row = self.db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE site_id = ?", (site_id,)
            ).fetchone()
        return int(row[0])


def _dimensions(item: Pageview | Completion) -> tuple[str, ...]:
    return (
        item.hostname,
        domain_of(item.hostname),
        item.pathname,
        item.referrer_hostname,
        item.referrer_pathname,
        item.referrer_source,
        item.browser,
        item.country_code,
        item.city,
        item.state,
        item.region,
        item.device_type,
        item.operating_system,
        item.utm_campaign,
        item.utm_content,
        item.utm_medium,
        item.utm_source,
        item.utm_term,
        item.keyword,
        item.ref,
    )
