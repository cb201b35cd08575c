"""A local Fathom Analytics API for tests, demos and benchmarks.

`FakeFathom` serves the API as FACTS.md describes the real one (shapes, errors,
permissions, rate limits), computes aggregations with SQL over seeded synthetic
traffic, and injects faults on request. The pytest fixture `fake_fathom` lives in
`fathom_async.testing.pytest_plugin`; `python -m fathom_async.testing` serves it
from the command line.
"""

from ._fake import FakeFathom
from ._faults import FaultKind, FaultRule, Faults, InjectedFault
from ._ratelimit import RateLimiter
from ._store import (
    Account,
    Completion,
    Event,
    Milestone,
    Pageview,
    RecordedRequest,
    Site,
    Store,
    Token,
)
from ._traffic import DemoSite

__all__ = [
    "Account",
    "Completion",
    "DemoSite",
    "Event",
    "FakeFathom",
    "FaultKind",
    "FaultRule",
    "Faults",
    "InjectedFault",
    "Milestone",
    "Pageview",
    "RateLimiter",
    "RecordedRequest",
    "Site",
    "Store",
    "Token",
]
