"""The manifest: an append-only journal of what an export has finished.

One JSON object per line: a header (the spec and its fingerprint), the discovered
sites and events (so a resume asks nothing twice and plans the same work), then one
line per finished chunk with its file, row count and sha256. A chunk's line is
written only after its file was renamed into place, so a crash (even `kill -9`) at
any point leaves either a finished chunk with its line, or work that is redone. A
torn last line is ignored. Files the journal does not name are leftovers of an
interrupted chunk and are removed on resume, so no row is ever counted twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import attrs

from .._exceptions import FathomError

__all__ = ["ChunkRecord", "Manifest", "PlanMismatchError"]

VERSION = 1


class PlanMismatchError(FathomError):
    """The directory holds an export with other arguments; resuming would mix plans."""


@attrs.frozen
class ChunkRecord:
    """A finished chunk: where its rows are and how to check them."""

    key: str
    series: str
    file: str
    rows: int
    sha256: str
    start: date | None = None
    end: date | None = None
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        """The manifest line for this chunk (dates as ISO text)."""
        data = attrs.asdict(self)
        data["start"] = self.start.isoformat() if self.start else None
        data["end"] = self.end.isoformat() if self.end else None
        return {"chunk": data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChunkRecord:
        """The record a manifest line holds (the inverse of `to_json`)."""
        start, end = data.get("start"), data.get("end")
        return cls(
            key=data["key"],
            series=data["series"],
            file=data["file"],
            rows=int(data["rows"]),
            sha256=data["sha256"],
            start=date.fromisoformat(start) if start else None,
            end=date.fromisoformat(end) if end else None,
            truncated=bool(data.get("truncated", False)),
        )


def shard_root(directory: Path, shard: tuple[int, int]) -> Path:
    """Where one shard keeps its journal and files (the directory itself when unsharded)."""
    index, count = shard
    return directory if count == 1 else directory / f"shard-{index}-of-{count}"


class Manifest:
    """Reads and appends the journal of one export (one shard of it).

    Paths in the journal are relative to `root`, so a finished export can be moved.
    """

    def __init__(self, directory: Path, shard: tuple[int, int] = (0, 1)) -> None:
        self.directory = shard_root(directory, shard)
        self.path = self.directory / "manifest.jsonl"
        self.header: dict[str, Any] | None = None
        self.discovery: dict[str, Any] | None = None
        self.chunks: dict[str, ChunkRecord] = {}

    def load(self) -> bool:
        """Read the journal if there is one; False when the export is new."""
        if not self.path.exists():
            return False
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            # A torn last line (the process died mid-write): drop it, so the lines
            # appended from now on start on a line of their own. Its chunk is redone.
            data = data[: data.rfind(b"\n") + 1]
            with self.path.open("r+b") as handle:
                handle.truncate(len(data))
        for line in data.decode("utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # never written by us; the chunk it may name is redone
            if "header" in entry:
                self.header = entry["header"]
            elif "discovery" in entry:
                self.discovery = entry["discovery"]
            elif "chunk" in entry:
                record = ChunkRecord.from_json(entry["chunk"])
                self.chunks[record.key] = record
        return self.header is not None

    def check(self, spec_json: dict[str, Any], fingerprint: str) -> None:
        """Raise `PlanMismatchError` when the journal was started with other arguments.

        A resumed export must ask for exactly what the first run asked for, or its
        finished chunks would be mixed with rows of another plan.
        """
        if self.header is None:
            return
        if self.header.get("fingerprint") != fingerprint:
            old = self.header.get("spec", {})
            changed = sorted(k for k in set(old) | set(spec_json) if old.get(k) != spec_json.get(k))
            raise PlanMismatchError(
                f"{self.directory} holds an export started with other arguments"
                f" (changed: {', '.join(changed) or 'unknown'}); resume it with the same"
                " arguments, or export into a new directory"
            )

    def _append(self, entry: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, separators=(",", ":"), sort_keys=True) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def start(self, spec_json: dict[str, Any], fingerprint: str) -> None:
        """Begin a new journal: its header holds the spec and its fingerprint."""
        self.header = {"version": VERSION, "fingerprint": fingerprint, "spec": spec_json}
        self._append({"header": self.header})

    def record_discovery(self, discovery: dict[str, Any]) -> None:
        """Journal the sites, events and plan found before any report is fetched."""
        self.discovery = discovery
        self._append({"discovery": discovery})

    def record_chunk(self, record: ChunkRecord) -> None:
        """Journal a finished chunk (written and fsynced before it counts as done)."""
        self._append(record.to_json())
        self.chunks[record.key] = record

    def files(self) -> Iterator[Path]:
        """The data files of every finished chunk, in the order they finished."""
        for record in self.chunks.values():
            yield self.directory / record.file

    def remove_leftovers(self) -> list[Path]:
        """Delete data files no finished chunk names (a crash between rename and journal)."""
        keep = {self.directory / record.file for record in self.chunks.values()}
        removed = []
        for path in self.directory.rglob("*"):
            relative = path.relative_to(self.directory)
            if not path.is_file() or path.name == "manifest.jsonl":
                continue
            if relative.parts[0].startswith("shard-"):
                continue  # another shard's work, sharing the directory
            if path.suffix == ".tmp" or (path not in keep and _is_data(path)):
                path.unlink()
                removed.append(path)
        return removed


def _is_data(path: Path) -> bool:
    return path.suffix in (".jsonl", ".csv", ".parquet")
