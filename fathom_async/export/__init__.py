"""Bulk export: plan, fetch at bulk priority, write atomically, resume after any stop.

`run_export(client, ExportSpec(...), directory)` writes every site's entities and
reports into `directory` (the guide's "Bulk export" page has complete programs).
Run the same export again into the same directory to resume it: finished chunks are
skipped, and the rows are exactly those an uninterrupted run writes.
"""

from ._manifest import ChunkRecord, Manifest, PlanMismatchError
from ._runner import Export, ExportProgress, ExportSummary, run_export
from ._spec import ExportEntity, ExportFormat, ExportSpec
from ._writers import read_rows

__all__ = [
    "ChunkRecord",
    "Export",
    "ExportEntity",
    "ExportFormat",
    "ExportProgress",
    "ExportSpec",
    "ExportSummary",
    "Manifest",
    "PlanMismatchError",
    "read_rows",
    "run_export",
]
