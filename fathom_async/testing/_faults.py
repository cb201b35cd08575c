"""Seeded fault injection: which requests fail, how, and a count of every fault.

A rule names a route (`"POST /sites"`, `"GET /sites/{site_id}"`, a glob over the
concrete path such as `"/sites/*"`, or `"*"`), a fault and a probability; `times`
caps how often it fires (a 429 storm is `fault="rate_limit", times=20`). Decisions
come from a private `random.Random(seed)`, so a run is reproducible.

Faults and when they strike:

- before the request is handled: `latency` (sleep `seconds`, then carry on),
  `error_500`, `error_503`, `rate_limit` (429 with `Retry-After: retry_after`, or
  none at all with `retry_after=None`),
  `reset_before_commit` (drop the connection; nothing happened);
- after the handler committed its work: `reset_after_commit` (the write happened,
  the client gets no response), `truncated_body` (half the body, then the connection
  closes), `non_json_body` (the status, but an HTML body labelled JSON).

This module decides and counts; the app carries the faults out.
"""

from __future__ import annotations

import fnmatch
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, get_args

__all__ = ["AFTER_COMMIT", "FaultKind", "FaultRule", "Faults", "InjectedFault"]

FaultKind = Literal[
    "latency",
    "error_500",
    "error_503",
    "rate_limit",
    "reset_before_commit",
    "reset_after_commit",
    "truncated_body",
    "non_json_body",
]
"""What an injected fault does: delay the answer (`latency`), answer 500 or 503, answer
429 (`rate_limit`, with `Retry-After`), reset the connection before or after the
request took effect, cut the body short, or send a body that is not JSON."""
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
AFTER_COMMIT: frozenset[str] = frozenset({"reset_after_commit", "truncated_body", "non_json_body"})


@dataclass
class FaultRule:
    """One injection rule; `injected` counts how often it fired."""

    fault: FaultKind
    route: str = "*"
    probability: float = 1.0
    times: int | None = None
    seconds: float = 1.0
    retry_after: int | None = 1
    injected: int = 0
    method: str | None = field(init=False, default=None)
    path: str = field(init=False, default="*")

    def __post_init__(self) -> None:
        if self.fault not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.fault!r}; choose from {sorted(FAULT_KINDS)}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        method, _, path = self.route.strip().rpartition(" ")
        self.method = method.upper() or None
        if self.method == "*":
            self.method = None
        path = path or "*"
        if path.startswith("/v1/"):
            path = path[3:]
        self.path = path

    @property
    def exhausted(self) -> bool:
        """Whether the rule has struck its `times` and no longer applies."""
        return self.times is not None and self.injected >= self.times

    def matches(self, method: str, route: str | None, path: str) -> bool:
        """Does this rule cover a request (`route` is the template, `path` concrete)?"""
        if self.method is not None and self.method != method:
            return False
        return self.path in ("*", route) or fnmatch.fnmatchcase(path, self.path)


@dataclass(frozen=True)
class InjectedFault:
    """A fault that struck: which, and on what request."""

    fault: FaultKind
    method: str
    path: str


class Faults:
    """The rules in force, and `counts` (fault name -> times injected)."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self.rules: list[FaultRule] = []
        self.counts: Counter[str] = Counter()
        self.log: list[InjectedFault] = []

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
        """Add a rule; returns it (pass it to `remove`, or read its `injected`)."""
        rule = FaultRule(
            fault=fault,
            route=route,
            probability=probability,
            times=times,
            seconds=seconds,
            retry_after=retry_after,
        )
        self.rules.append(rule)
        return rule

    def remove(self, rule: FaultRule) -> None:
        """Stop applying one rule (the counts it caused stay)."""
        self.rules.remove(rule)

    def clear(self) -> None:
        """Remove every rule (the counts stay)."""
        self.rules.clear()

    @property
    def total(self) -> int:
        """How many faults struck in all."""
        return sum(self.counts.values())

    def draw(self, method: str, route: str | None, path: str) -> list[FaultRule]:
        """The rules that strike this request: every latency, then at most one other.

        Every matching rule draws a number, struck or not, so a run replays exactly.
        """
        struck: list[FaultRule] = []
        terminal = False
        for rule in self.rules:
            if rule.exhausted or not rule.matches(method, route, path):
                continue
            if self._rng.random() >= rule.probability:
                continue
            if rule.fault != "latency":
                if terminal:
                    continue
                terminal = True
            rule.injected += 1
            self.counts[rule.fault] += 1
            self.log.append(InjectedFault(rule.fault, method, path))
            struck.append(rule)
        return struck
