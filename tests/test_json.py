"""The response path's one JSON decoder reads the same documents with any extras."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fathom_async import _json
from fathom_async._exceptions import APIResponseError
from fathom_async._protocol import decode_json

DECODERS = {"msgspec": (), "json": ("msgspec",)}


@pytest.fixture(params=sorted(DECODERS))
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each decoder in turn, the faster ones hidden as if not installed."""
    for module in DECODERS[request.param]:
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    _json._pick.cache_clear()
    try:
        yield request.param
    finally:
        _json._pick.cache_clear()


def test_the_fastest_installed_decoder_is_picked(decoder: str) -> None:
    assert _json.decoder_name() == decoder


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'[{"pageviews": "1382", "date": "2024-01-01"}]',
         [{"pageviews": "1382", "date": "2024-01-01"}]),
        (b' {"a": 1, "a": 2} \n', {"a": 2}),
        (b'{"big": 123456789012345678901234567890}', {"big": 123456789012345678901234567890}),
        ('{"name": "Caf\u00e9 \u2603"}'.encode(), {"name": "Caf\u00e9 \u2603"}),
        (b'\xef\xbb\xbf{"bom": true}', {"bom": True}),
    ],
)
def test_every_decoder_reads_the_same(decoder: str, body: bytes, expected: object) -> None:
    assert _json.loads(body) == expected


@pytest.mark.parametrize(
    "body", [b"NaN", b'{"a": Infinity}', b'{"a": -Infinity}', b'{"a": "\xff"}', b"{", b"<html>"]
)
def test_every_decoder_refuses_the_same(decoder: str, body: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each decoder has its own subclass
        _json.loads(body)
    with pytest.raises(APIResponseError, match="not valid JSON"):
        decode_json(200, body, "application/json")


def test_speedups_is_the_msgspec_extra_and_aiolimiter_only_a_benchmark_peer() -> None:
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    runtime = re.search(r"(?ms)^dependencies = \[(.*?)^\]", text)
    speedups = re.search(r'(?m)^speedups = \[(.*)\]$', text)
    dev = re.search(r"(?ms)^dev = \[(.*?)^\]", text)
    assert runtime is not None
    assert speedups is not None
    assert dev is not None
    assert "msgspec" in speedups.group(1)
    assert "aiolimiter" not in runtime.group(1)
    assert "msgspec" not in runtime.group(1)  # the standard library is the fallback
    assert "aiolimiter" in dev.group(1)
    assert "speedups" in dev.group(1)
    imports = re.findall(r"(?m)^\s*(?:import|from) aiolimiter", "".join(
        path.read_text(encoding="utf-8")
        for path in (Path(__file__).parent.parent / "fathom_async").rglob("*.py")
    ))
    assert imports == []  # nothing in the package imports it
