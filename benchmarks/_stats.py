"""How every benchmark writes a figure measured several times: the median, then the spread."""

from __future__ import annotations

import math
import statistics

__all__ = ["report_floors", "spread"]


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
