"""Chunk files: JSON Lines, CSV and Parquet, each written atomically.

A chunk is written to `<name>.tmp`, flushed to disk, then renamed over its final
name, so a reader (or a resumed export) sees a whole chunk or none of it. The sha256
is taken of the final bytes and goes to the manifest.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._exceptions import ValidationError

__all__ = ["read_rows", "write_chunk"]


def _jsonl(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> bytes:
    lines = [json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str)
             for row in rows]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="raise",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue().encode()


def _parquet(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> bytes:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - depends on the extra being installed
        raise ValidationError(
            "format", "parquet", "install the parquet extra: pip install 'fathom-async[parquet]'"
        ) from None
    table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


_ENCODERS = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}


def columns_of(rows: Sequence[dict[str, Any]], preferred: Sequence[str]) -> list[str]:
    """`preferred` first, then any other key in order of first appearance."""
    columns = list(preferred)
    seen = set(columns)
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    return columns


def write_chunk(
    path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str
) -> str:
    """Write `rows` to `path` atomically; return the sha256 of what was written."""
    data = _ENCODERS[fmt](rows, columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    with temp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    return hashlib.sha256(data).hexdigest()


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Read one chunk file back (JSON Lines, CSV as strings, or Parquet)."""
    if path.suffix == ".jsonl":
        text = path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line]
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return [dict(row) for row in table.to_pylist()]
