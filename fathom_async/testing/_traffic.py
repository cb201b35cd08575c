"""Seeded synthetic traffic: demo sites, their events, and 90 days of visits.

The same seed, pageview count and end time always give the same rows. Visits have
realistic shapes: more traffic on weekdays and in the afternoon (UTC), growth over
the period, a few pages that get most views, search/social/direct referrers, UTM
campaigns, correlated device/OS/browser, places, multi-page sessions with durations
and bounces, and event completions (some with values) inside those sessions. A few
visits are live (in the last minutes) so current visitors has something to show.

This module only writes through the store's bulk-insert methods; it never queries.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ._store import Site, Store, domain_of, format_timestamp

__all__ = ["DemoSite", "generate_demo"]

_T = TypeVar("_T")

_DAY = 86_400
_DAYS = 90
_LIVE_WINDOW = 240  # live visits start in the last four minutes
_PAST_MARGIN = 900  # other visits end at least this long before now


class _Picker(Generic[_T]):
    """Weighted choice by bisecting cumulative weights (much faster than choices())."""

    def __init__(self, items: Sequence[tuple[_T, float]]) -> None:
        self.values = [value for value, _ in items]
        self.cumulative = list(itertools.accumulate(weight for _, weight in items))
        self.total = self.cumulative[-1]

    def __call__(self, rng: random.Random) -> _T:
        return self.values[bisect.bisect_right(self.cumulative, rng.random() * self.total)]


def _zipf(paths: Sequence[str]) -> _Picker[str]:
    return _Picker([(path, 1.0 / (rank + 1)) for rank, path in enumerate(paths)])


@dataclass(frozen=True)
class _EventSpec:
    name: str
    rate: float  # probability per visit
    values: tuple[int, ...] = ()  # cents; empty means no value


@dataclass(frozen=True)
class _SiteSpec:
    name: str
    id: str
    hostnames: tuple[str, ...]
    paths: tuple[str, ...]
    weight: float
    events: tuple[_EventSpec, ...]
    timezone: str | None = None


_BLOG = tuple(
    f"/blog/{slug}"
    for slug in (
        "why-privacy-matters",
        "cookie-banners-are-dead",
        "gdpr-in-plain-english",
        "how-we-grew-to-10k",
        "a-year-of-remote-work",
        "our-tech-stack",
        "launch-week-recap",
        "pricing-experiments",
        "the-case-for-simple-analytics",
        "writing-fast-sql",
    )
)

_SITES = (
    _SiteSpec(
        name="Bugs Bunny Portfolio",
        id="CDBUGS",
        hostnames=("https://bugsbunny.example",),
        paths=("/", "/about", "/spacejam", "/blog", *_BLOG[:6], "/contact", "/portfolio"),
        weight=0.5,
        events=(
            _EventSpec("Signed up to newsletter", 0.04),
            _EventSpec("Downloaded CV", 0.02),
        ),
    ),
    _SiteSpec(
        name="Acme Inc",
        id="ACMEIN",
        hostnames=("https://acme.example", "https://shop.acme.example"),
        paths=(
            "/",
            "/pricing",
            "/features",
            "/products/anvil",
            "/products/rocket-skates",
            "/products/giant-magnet",
            "/checkout",
            "/docs",
            "/docs/getting-started",
            "/docs/api",
            "/login",
            "/register",
            "/blog",
            *_BLOG,
        ),
        weight=0.35,
        events=(
            _EventSpec("Purchase product", 0.015, (1900, 4900, 9900, 24900)),
            _EventSpec("Signed up to newsletter", 0.03),
            _EventSpec("Started trial", 0.02),
        ),
        timezone="America/New_York",
    ),
    _SiteSpec(
        name="Daffy's Blog",
        id="DAFFYB",
        hostnames=("https://daffy.example",),
        paths=("/", *_BLOG, "/about", "/rss"),
        weight=0.15,
        events=(_EventSpec("Tipped the author", 0.01, (300, 500, 1000)),),
    ),
)

# referrer hostname, pathnames, source, weight, search keywords (sometimes sent by ads)
_REFERRERS = _Picker(
    [
        (("", ("",), "", ()), 40),
        (
            (
                "https://www.google.com",
                ("/",),
                "Google",
                ("privacy analytics", "google analytics alternative", "cookie free analytics"),
            ),
            25,
        ),
        (("https://duckduckgo.com", ("/",), "DuckDuckGo", ()), 5),
        (("https://www.bing.com", ("/search",), "Bing", ("web analytics",)), 3),
        (("https://t.co", ("/x8Jq2LmA", "/Pz41Rk0e", "/a7BcD9eF"), "Twitter", ()), 8),
        (("https://news.ycombinator.com", ("/item", "/"), "Hacker News", ()), 5),
        (
            (
                "https://www.reddit.com",
                ("/r/webdev/comments/abc123", "/r/privacy/comments/def456"),
                "Reddit",
                (),
            ),
            5,
        ),
        (("https://github.com", ("/acme/anvil", "/bugs/portfolio"), "GitHub", ()), 4),
        (("https://www.producthunt.com", ("/posts/acme",), "Product Hunt", ()), 3),
        (("https://usefathom.com", ("/why-we-love-bugs-bunny",), "usefathom.com", ()), 2),
    ]
)

# campaign, content, medium, source, term
_NO_CAMPAIGN = ("", "", "", "", "")
_CAMPAIGNS = _Picker(
    [
        (("spring-launch", "header-link", "email", "newsletter", ""), 5),
        (("relaunch", "blog-post-relaunch", "social", "twitter", ""), 4),
        (("retargeting", "banner-a", "cpc", "google", "best+privacy+first+analytics"), 3),
        (("black-friday", "banner-b", "cpc", "google", "analytics+deal"), 2),
        (("partners", "", "referral", "partner-site", ""), 1),
    ]
)

# country_code, city, state, region (ISO 3166-2)
_PLACES = _Picker(
    [
        (("US", "San Francisco", "California", "US-CA"), 9),
        (("US", "New York", "New York", "US-NY"), 9),
        (("US", "Austin", "Texas", "US-TX"), 4),
        (("GB", "London", "England", "GB-ENG"), 8),
        (("GB", "Manchester", "England", "GB-ENG"), 3),
        (("DE", "Berlin", "Berlin", "DE-BE"), 6),
        (("DE", "Munich", "Bavaria", "DE-BY"), 3),
        (("FR", "Paris", "Île-de-France", "FR-IDF"), 5),
        (("CA", "Toronto", "Ontario", "CA-ON"), 4),
        (("CA", "Vancouver", "British Columbia", "CA-BC"), 2),
        (("NL", "Amsterdam", "North Holland", "NL-NH"), 3),
        (("AU", "Sydney", "New South Wales", "AU-NSW"), 3),
        (("IN", "Bengaluru", "Karnataka", "IN-KA"), 4),
        (("BR", "São Paulo", "São Paulo", "BR-SP"), 3),
        (("JP", "Tokyo", "Tokyo", "JP-13"), 3),
        (("UA", "Kyiv", "Kyiv", "UA-30"), 2),
    ]
)

# device type -> operating system -> browser
_DEVICES = _Picker([("Desktop", 55), ("Phone", 40), ("Tablet", 5)])
_SYSTEMS = {
    "Desktop": _Picker([("Windows", 55), ("Mac OS", 35), ("Linux", 7), ("Chrome OS", 3)]),
    "Phone": _Picker([("iOS", 55), ("Android", 45)]),
    "Tablet": _Picker([("iPadOS", 70), ("Android", 30)]),
}
_BROWSERS = {
    "Windows": _Picker([("Chrome", 65), ("Edge", 20), ("Firefox", 12), ("Opera", 3)]),
    "Mac OS": _Picker([("Safari", 50), ("Chrome", 40), ("Firefox", 10)]),
    "Linux": _Picker([("Firefox", 55), ("Chrome", 45)]),
    "Chrome OS": _Picker([("Chrome", 1)]),
    "iOS": _Picker([("Safari", 85), ("Chrome", 15)]),
    "Android": _Picker([("Chrome", 80), ("Samsung Internet", 15), ("Firefox", 5)]),
    "iPadOS": _Picker([("Safari", 90), ("Chrome", 10)]),
}
_SESSION_LENGTH = _Picker(
    [(1, 45), (2, 20), (3, 12), (4, 8), (5, 6), (6, 4), (7, 2), (8, 1.5), (10, 1), (15, 0.5)]
)
# UTC hour of day; traffic peaks in the European afternoon / American morning.
_HOURS = _Picker(
    [(h, 0.3 + (1.0 if 12 <= h <= 20 else 0.5 if 7 <= h <= 23 else 0)) for h in range(24)]
)


@dataclass(frozen=True)
class DemoSite:
    """A generated site, its hostnames and the ids of its events."""

    site: Site
    hostnames: tuple[str, ...]
    event_ids: tuple[str, ...]


def generate_demo(store: Store, *, seed: int, pageviews: int, now: float) -> list[DemoSite]:
    """Create the demo sites and events, and `pageviews` pageviews ending at `now`."""
    rng = random.Random(seed)
    now = int(now)
    demo: list[DemoSite] = []
    event_specs: list[list[tuple[str, _EventSpec]]] = []
    for age, spec in zip((400, 300, 200), _SITES, strict=True):
        site = store.add_site(
            spec.name,
            id=spec.id,
            created_at=format_timestamp(now - age * _DAY),
            timezone=spec.timezone,
            multi_domain=True if len(spec.hostnames) > 1 else None,
            multi_domain_option="separate" if len(spec.hostnames) > 1 else None,
        )
        events = [
            (store.add_event(site.id, e.name, created_at=site.created_at).id, e)
            for e in spec.events
        ]
        event_specs.append(events)
        demo.append(DemoSite(site, spec.hostnames, tuple(eid for eid, _ in events)))
    if pageviews > 0:
        with store.bulk_load():
            _generate_traffic(store, rng, demo, event_specs, pageviews, now)
    return demo


def _day_picker(now: int) -> _Picker[int]:
    """Days back from today (0 = today): growth over time, quieter weekends."""
    weights = []
    for back in range(_DAYS):
        growth = 1.0 - 0.4 * back / _DAYS
        weekday = ((now - back * _DAY) // _DAY + 3) % 7  # 0 = Monday
        weights.append((back, growth * (0.65 if weekday >= 5 else 1.0)))
    return _Picker(weights)


def _generate_traffic(
    store: Store,
    rng: random.Random,
    demo: list[DemoSite],
    event_specs: list[list[tuple[str, _EventSpec]]],
    pageviews: int,
    now: int,
) -> None:
    sites = _Picker([(i, spec.weight) for i, spec in enumerate(_SITES)])
    path_pickers = [_zipf(spec.paths) for spec in _SITES]
    days = _day_picker(now)
    today = now - now % _DAY
    live_sessions = min(40, max(1, pageviews // 2_000))
    pv_rows: list[tuple[object, ...]] = []
    completion_rows: list[tuple[object, ...]] = []
    remaining = pageviews
    session_number = 0
    while remaining > 0:
        session_number += 1
        index = sites(rng)
        spec = _SITES[index]
        site_id = demo[index].site.id
        length = min(remaining, _SESSION_LENGTH(rng))
        remaining -= length
        picker = path_pickers[index]
        pathnames = rng.choices(picker.values, cum_weights=picker.cumulative, k=length)
        durations = [min(900, 5 + int(rng.expovariate(1 / 40))) for _ in range(length - 1)]
        durations.append(0)
        if session_number <= live_sessions:
            durations = [min(d, 20) for d in durations]
            start = now - sum(durations) - rng.randrange(_LIVE_WINDOW)
        else:
            # Past visits end before the live window, so current visitors stay few.
            start = now
            while start + sum(durations) > now - _PAST_MARGIN:
                start = today - days(rng) * _DAY + _HOURS(rng) * 3600 + rng.randrange(3600)
        hostname = spec.hostnames[0] if len(spec.hostnames) == 1 else rng.choice(spec.hostnames)
        ref_host, ref_paths, source, keywords = _REFERRERS(rng)
        ref_path = rng.choice(ref_paths)
        keyword = rng.choice(keywords) if keywords and rng.random() < 0.2 else ""
        campaign = _CAMPAIGNS(rng) if rng.random() < 0.12 else _NO_CAMPAIGN
        ref = "producthunt" if source == "Product Hunt" else ""
        device = _DEVICES(rng)
        system = _SYSTEMS[device](rng)
        common = (_BROWSERS[system](rng), *_PLACES(rng), device, system)
        session_id = store.new_session_id()
        # The row tails are built once per visit (referrer and campaign belong to its entry).
        pages = (pathnames[0], pathnames[-1], hostname, domain_of(hostname))
        entry_tail = (ref_host, ref_path, source, *common, *campaign, keyword, ref)
        other_tail = ("", "", "", *common, *_NO_CAMPAIGN, "", "")
        seen: set[str] = set()
        stamps = []
        ts = start
        last = length - 1
        for position in range(length):
            pathname = pathnames[position]
            unique = pathname not in seen
            seen.add(pathname)
            stamps.append(ts)
            duration = durations[position]
            if position == 0:
                flags = (1, int(last == 0), int(unique), int(last == 0), duration)
                tail = entry_tail
            else:
                flags = (0, int(position == last), int(unique), 0, duration)
                tail = other_tail
            pv_rows.append((site_id, ts, session_id, *flags, *pages, pathname, *tail))
            ts += duration
        for event_id, event in event_specs[index]:
            if rng.random() >= event.rate:
                continue
            repeats = 2 if rng.random() < 0.1 else 1
            for repeat in range(repeats):
                at = rng.randrange(length)
                completion_rows.append(
                    (
                        site_id,
                        event_id,
                        stamps[at],
                        session_id,
                        int(repeat == 0),
                        rng.choice(event.values) if event.values else 0,
                        hostname,
                        pages[3],
                        pathnames[at],
                        *entry_tail,
                    )
                )
        if len(pv_rows) >= 50_000:
            store.insert_pageview_rows(pv_rows)
            pv_rows = []
    store.insert_pageview_rows(pv_rows)
    store.insert_completion_rows(completion_rows)
