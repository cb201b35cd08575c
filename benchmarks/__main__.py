"""`python -m benchmarks`: every figure we promise, in one run, into RESULTS.md.

Each benchmark runs in its own process and prints a Markdown table that measures us
side by side with a peer or a floor in the same run. This runner collects them under
a header naming the machine and the date, writes `benchmarks/RESULTS.md` (which the
README quotes), and exits non-zero when a benchmark failed or produced no table, so a
figure can never silently go missing. `--only NAME` reruns a subset and replaces
just those sections of an existing RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = {
    "overhead": "Request overhead against raw aiohttp",
    "aggregations": "100,000 aggregation rows through aggregations.query",
    "retry": "What the retry engine costs a call",
    "telemetry": "What OpenTelemetry support costs a call",
    "scheduler": "Scheduler accuracy and per-acquire cost",
    "export": "Bulk export: wall time against the rate-limit floor, and peak memory",
    "load": "Warehouse load (dlt into DuckDB): wall time against the rate-limit floor",
    "imports": "Import time",
    "redis": "Shared limiter on Redis",
}
RESULTS = Path(__file__).with_name("RESULTS.md")


def _machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({model}), Python {platform.python_version()},"
            f" {platform.system()} {platform.release()}")


def _merge(old: str, fresh: dict[str, str]) -> list[str]:
    """The old file's sections, with those just measured replaced."""
    parts = re.split(r"(?m)^(?=## )", old)
    titles = {BENCHMARKS[name]: text for name, text in fresh.items()}
    merged = []
    for part in parts:
        title = part[3:].split("\n", 1)[0] if part.startswith("## ") else None
        merged.append(titles.pop(title, part) if title else part)
    return [*merged, *titles.values()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    options = parser.parse_args(argv)
    chosen = options.only or list(BENCHMARKS)
    today = datetime.date.today().isoformat()
    sections = [f"# Benchmark results\n\nMeasured {today} on {_machine()}.\n"
                "Rerun with `python -m benchmarks`; each table compares us with a peer or a"
                " floor measured in the same run.\n"]
    failed: list[str] = []
    fresh: dict[str, str] = {}
    for name in chosen:
        print(f"== {name}: {BENCHMARKS[name]}", file=sys.stderr, flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}"],
                              capture_output=True, text=True)
        took = time.monotonic() - started
        table = done.stdout.strip()
        if done.returncode != 0 or not re.search(r"^\|\s*-{3}", table, re.MULTILINE):
            failed.append(name)
            fresh[name] = (f"## {BENCHMARKS[name]}\n\n**No figure**: `benchmarks.{name}`"
                           f" exited {done.returncode}.\n\n```\n{done.stderr[-2000:]}\n```\n")
            print(done.stderr[-2000:], file=sys.stderr)
            continue
        fresh[name] = (f"## {BENCHMARKS[name]}\n\n`python -m benchmarks.{name}`"
                       f" ({took:.0f} s, {today})\n\n{table}\n")
        print(table, file=sys.stderr)
    if options.only and options.output.exists():
        sections = _merge(options.output.read_text(encoding="utf-8"), fresh)
    else:
        sections += [fresh[name] for name in chosen]
    # One blank line between sections, however many the file had: a merge keeps each
    # old section's own trailing newlines, and joining them again would add to them.
    text = "\n".join(section.rstrip("\n") + "\n" for section in sections)
    options.output.write_text(text, encoding="utf-8")
    print(f"wrote {options.output}", file=sys.stderr)
    if failed:
        print(f"no figure from: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
