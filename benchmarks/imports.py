"""Import time: `import fathom_async` next to `import aiohttp`, in fresh interpreters.

Run it with `python -m benchmarks.imports`. Each import runs in a new process, many
times, alternating, and the figure is the median time of the import itself (the
interpreter's start-up, measured with `pass`, subtracted). Target: <= 1.3x aiohttp,
the dependency a user of any async HTTP client imports anyway.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

PROBE = "import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
CASES = {"aiohttp": "import aiohttp", "fathom_async": "import fathom_async"}


def _time(statement: str) -> float:
    done = subprocess.run([sys.executable, "-c", PROBE.format(statement=statement)],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.imports")
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args(argv)
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(options.runs):
        for name, statement in CASES.items():
            samples[name].append(_time(statement) * 1000)
    base = statistics.median(samples["aiohttp"])
    ours = statistics.median(samples["fathom_async"])
    print(f"Median (min-max) of {options.runs} fresh interpreters each, alternating.\n")
    print("| import | ms | ratio to aiohttp | target | met |")
    print("| --- | --- | --- | --- | --- |")
    for name in CASES:
        values = samples[name]
        ratio = statistics.median(values) / base
        target = "<= 1.3x" if name == "fathom_async" else ""
        met = ("yes" if ours / base <= 1.3 else "NO") if name == "fathom_async" else ""
        print(f"| `import {name}` | {statistics.median(values):.1f} ({min(values):.1f}-"
              f"{max(values):.1f}) | {ratio:.2f} | {target} | {met} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
