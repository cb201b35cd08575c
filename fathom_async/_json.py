"""The one JSON decoder of the response path: the fastest one installed.

With the `speedups` extra that is msgspec: its generic decoder was the fastest we
measured, on a one-object body and on 100,000 report rows, and it reads every
document the standard library reads (orjson, for one, refuses integers past 64
bits). Without it, the standard library. Both read the same documents the same
way: UTF-8 JSON (a leading byte-order mark is skipped), and the non-standard
`NaN`/`Infinity` literals are refused by both, so an answer never depends on
which extras are installed.

Picked on first use, so that `import fathom_async` does not import a decoder.
Every failure is a `ValueError` (msgspec's `DecodeError` and the standard
library's `JSONDecodeError` and `UnicodeDecodeError` all are one).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

__all__ = ["decoder_name", "loads"]

_BOM = b"\xef\xbb\xbf"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


@functools.cache
def _pick() -> tuple[str, Callable[[bytes], Any]]:
    try:
        import msgspec

        return "msgspec", msgspec.json.Decoder().decode
    except ImportError:
        pass
    decoder = json.JSONDecoder(parse_constant=_refuse_constant)

    def stdlib(body: bytes) -> Any:
        return decoder.decode(body.decode("utf-8"))

    return "json", stdlib


def decoder_name() -> str:
    """Which decoder `loads` uses: "msgspec" or "json"."""
    return _pick()[0]


def loads(body: bytes) -> Any:
    """Decode a UTF-8 JSON body; anything else raises a `ValueError`."""
    if body.startswith(_BOM):
        body = body[3:]
    return _pick()[1](body)
