"""How every benchmark writes a figure measured several times: the median, then the spread."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

__all__ = ["AgainstFloors", "against_floors", "report_floors", "spread"]


def spread(values: list[float], form: str = ".1f") -> str:
    """`median (min-max)`, each written with the format spec `form`."""
    return f"{statistics.median(values):{form}} ({min(values):{form}}-{max(values):{form}})"


def report_floors(requests: int, time_scale: float) -> tuple[float, float]:
    """The seconds Fathom's 10 report calls a minute (sped up `time_scale` times) allow.

    First the steady floor, `requests / rate`; then the strictest an exact window
    allows: the first 10 calls go at once and each later batch of 10 one period after
    the one before, so the last call cannot go before `(ceil(requests / 10) - 1) *
    period` (at least one period).
    """
    period = 60 / time_scale
    steady = requests * period / 10
    strict = max((math.ceil(requests / 10) - 1) * period, period)
    return steady, strict


class AgainstFloors(NamedTuple):
    """Runs' wall times, their steady floors, and the ratios to both floors."""

    walls: list[float]
    floors: list[float]
    ratios: list[float]
    strict: list[float]


def against_floors(runs: Iterable[Mapping[str, Any]], time_scale: float) -> AgainstFloors:
    """Each run's `elapsed` against the floors of its `report_requests`."""
    walls, floors, ratios, strict = [], [], [], []
    for run in runs:
        steady, strictest = report_floors(run["report_requests"], time_scale)
        walls.append(run["elapsed"])
        floors.append(steady)
        ratios.append(run["elapsed"] / steady)
        strict.append(run["elapsed"] / strictest)
    return AgainstFloors(walls, floors, ratios, strict)
