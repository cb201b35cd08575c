"""Bulk export: plan, fetch at bulk priority, write atomically, resume after any stop.

    spec = ExportSpec(date_from=date(2024, 1, 1), date_to=date(2024, 12, 31))
    async with FathomClient() as fathom:
        summary = await run_export(fathom, spec, "fathom-export")

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
