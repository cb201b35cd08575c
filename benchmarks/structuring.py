"""How fast a large aggregation turns into typed rows, side by side in one run.

    python -m benchmarks.structuring [--rows 100000] [--runs 7] [--require 0.8]

The payload is what the live API sends (FACTS.md): a bare JSON array whose numbers
are strings, here 100,000 rows of 10 fields. Every contender gets the same bytes
and returns typed rows (bytes in, rows out), so JSON decoding is part of each
figure; each result is kept until its timer stops, so freeing it is not. The
pydantic and msgspec models mirror `AggregationRow` (32 optional fields). Runs
are interleaved, with a full garbage collection before each, and the garbage
collector left on, as callers have it.

Prints a Markdown table (median and min-max over the runs) and exits non-zero if
a figure could not be produced, or, with `--require R`, if the fast path takes
more than R times pydantic's time.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs

from fathom_async._converter import get_converter
from fathom_async._json import decoder_name, loads
from fathom_async._models import AggregationRow
from fathom_async._rows import structure_rows


def structure_json(body: bytes, converter: Any) -> list[AggregationRow]:
    return structure_rows(loads(body), converter)

FIELD_TYPES = {f.name: f.type for f in attrs.fields(AggregationRow) if f.name != "raw"}


def payload(rows: int, seed: int = 7) -> bytes:
    """`rows` aggregation rows with 10 fields, every number a string."""
    rng = random.Random(seed)
    data = [
        {
            "visits": str(rng.randrange(100_000)),
            "uniques": str(rng.randrange(100_000)),
            "pageviews": str(rng.randrange(1_000_000)),
            "avg_duration": f"{rng.random() * 600:.2f}",
            "bounce_rate": f"{rng.random():.4f}",
            "date": f"2024-{n % 12 + 1:02d}-{n % 28 + 1:02d}",
            "hostname": rng.choice(["example.com", "www.example.com", "blog.example.com"]),
            "pathname": f"/articles/{rng.randrange(5_000)}",
            "browser": rng.choice(["Chrome", "Firefox", "Safari", "Edge"]),
            "country_code": rng.choice(["NL", "DE", "US", "GB", "FR", "JP"]),
        }
        for n in range(rows)
    ]
    return json.dumps(data).encode()


def _python_type(annotation: str) -> Any:
    return {"int | None": int | None, "float | None": float | None, "str | None": str | None}[
        annotation
    ]


def contenders() -> dict[str, tuple[str, Callable[[bytes], Any] | Exception]]:
    """name -> (what it does, bytes -> rows, or the error that stopped it)."""
    found: dict[str, tuple[str, Callable[[bytes], Any] | Exception]] = {}
    strict = get_converter(True)
    found["fathom_async fast path"] = (
        f"bytes -> list[AggregationRow] ({decoder_name()} decode + generated structurer)",
        lambda body: structure_json(body, strict),
    )
    try:
        import pydantic

        fields: dict[str, Any] = {
            name: (_python_type(str(kind)), None) for name, kind in FIELD_TYPES.items()
        }
        model = pydantic.create_model("AggregationRowModel", **fields)
        adapter = pydantic.TypeAdapter(list[model])  # type: ignore[valid-type]
        found["pydantic v2 validate_json"] = (
            "bytes -> list[BaseModel] (TypeAdapter(list[Model]).validate_json)",
            adapter.validate_json,
        )
    except Exception as exc:
        found["pydantic v2 validate_json"] = ("", exc)
    found["cattrs converter"] = (
        "bytes -> tuple[AggregationRow] (json.loads + Converter.structure_many)",
        lambda body: strict.structure_many(json.loads(body), AggregationRow),
    )
    try:
        import msgspec

        struct = msgspec.defstruct(
            "AggregationRowStruct",
            [(name, _python_type(str(kind)), None) for name, kind in FIELD_TYPES.items()],
        )
        decoder = msgspec.json.Decoder(list[struct], strict=False)  # type: ignore[valid-type]
        found["msgspec Struct (floor)"] = (
            "bytes -> list[Struct] (typed decode, lax str->int; no raw dicts)",
            decoder.decode,
        )
        generic = msgspec.json.Decoder()
        found["msgspec decode alone (floor)"] = ("bytes -> list[dict], no typing", generic.decode)
    except Exception as exc:
        found["msgspec Struct (floor)"] = ("", exc)
    try:
        import orjson

        found["orjson.loads alone (floor)"] = ("bytes -> list[dict], no typing", orjson.loads)
    except Exception as exc:
        found["orjson.loads alone (floor)"] = ("", exc)
    return found


def measure(function: Callable[[bytes], Any], body: bytes) -> float:
    gc.collect()
    start = time.perf_counter()
    result = function(body)
    elapsed = time.perf_counter() - start
    del result  # freeing the rows is not part of the figure
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--slow-runs", type=int, default=3, help="runs for the cattrs converter")
    parser.add_argument("--require", type=float, default=None,
                        help="fail if fast path / pydantic exceeds this ratio")
    args = parser.parse_args(argv)
    body = payload(args.rows)
    found = contenders()
    times: dict[str, list[float]] = {name: [] for name in found}
    errors: dict[str, str] = {
        name: f"{type(item).__name__}: {item}"
        for name, (_, item) in found.items()
        if isinstance(item, Exception)
    }
    expected = len(structure_json(body, get_converter(True)))
    for run in range(args.runs):
        for name, (_, function) in found.items():
            if isinstance(function, Exception) or name in errors:
                continue
            if name == "cattrs converter" and run >= args.slow_runs:
                continue
            try:
                if run == 0 and len(function(body)) != expected:
                    raise AssertionError("wrong number of rows")
                times[name].append(measure(function, body))
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
    baseline = statistics.median(times["pydantic v2 validate_json"]) if times.get(
        "pydantic v2 validate_json") else None
    print(f"Structuring {args.rows:,} aggregation rows (10 fields, numbers as strings),"
          f" {len(body) / 1e6:.1f} MB of JSON; Python {sys.version.split()[0]}\n")
    print("| contender | bytes in -> rows out | median ms | min-max ms | runs | x pydantic |")
    print("|---|---|---:|---:|---:|---:|")
    for name, (what, _) in found.items():
        if name in errors or not times[name]:
            print(f"| {name} | {what or '-'} | n/a | n/a | 0 | {errors.get(name, 'no runs')} |")
            continue
        median = statistics.median(times[name])
        low, high = min(times[name]), max(times[name])
        ratio = f"{median / baseline:.2f}" if baseline else "n/a"
        print(f"| {name} | {what} | {median * 1e3:.0f} | {low * 1e3:.0f}-{high * 1e3:.0f}"
              f" | {len(times[name])} | {ratio} |")
    status = 0
    if errors:
        print("\nfigures missing: " + "; ".join(f"{k} ({v})" for k, v in errors.items()))
        status = 1
    fast = times.get("fathom_async fast path")
    if baseline and fast:
        ratio_value = statistics.median(fast) / baseline
        goal = "met" if ratio_value <= 0.8 else "NOT met"
        print(f"\nfast path / pydantic = {ratio_value:.2f} (goal <= 0.80: {goal})")
        if args.require is not None and ratio_value > args.require:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
