"""What one public call did, for whoever asked: its trace span or its raw response.

A `CallRecord` is made only when someone will read it: a recording OpenTelemetry
span (`_telemetry`) or `client.with_raw_response` (`_raw`). While the call runs it
is the current one (`CALL`), and the request layer writes into it: each attempt,
the time spent waiting for rate-limit slots, and the last response's status,
headers (and body, for a raw response). Everything else leaves `CALL` at None and
pays one context-variable read per attempt.

Tasks started inside a call (the parts of a split query) see the same record and
add to it. A shared report request (`_reports.SingleFlight`) runs under a record of
its own, which each caller that waited for it takes in when it gets the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar

__all__ = ["CALL", "CallRecord"]


class CallRecord:
    """The counts and the last response of one public call (or one shared request)."""

    __slots__ = (
        "attempts",
        "body",
        "cached",
        "coalesced",
        "headers",
        "origin",
        "raw",
        "status",
        "wait",
    )

    def __init__(self, *, raw: bool = False) -> None:
        #: A raw response was asked for: keep the body, and read no cache.
        self.raw = raw
        self.attempts = 0  # requests sent (retries included)
        self.wait = 0.0  # seconds spent waiting for rate-limit slots
        self.cached = 0  # answers read from the report cache
        self.coalesced = False  # some answer came from another caller's request
        self.status: int | None = None
        self.headers: Mapping[str, str] | None = None
        self.body: bytes | None = None
        #: The span that sent a shared request (OpenTelemetry's SpanContext), for a
        #: link from the spans of callers that joined it.
        self.origin: object = None

    def responded(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """An attempt got an answer (the last one is what the call reports)."""
        self.status = status
        self.headers = headers
        if self.raw:
            self.body = body

    def take(self, other: CallRecord, *, wait: bool = True) -> None:
        """Add what `other` (a nested call, or a shared request) did to this record."""
        self.attempts += other.attempts
        if wait:
            self.wait += other.wait
        self.cached += other.cached
        self.coalesced = self.coalesced or other.coalesced
        if other.status is not None:
            self.status = other.status
            self.headers = other.headers
            self.body = other.body if self.raw else None

    @property
    def cache_hit(self) -> bool:
        """Whether the whole answer came from the report cache (nothing was sent)."""
        return self.cached > 0 and self.attempts == 0 and not self.coalesced


#: The record of the public call running in this context, if anyone reads one.
CALL: ContextVar[CallRecord | None] = ContextVar("fathom_async_call", default=None)
