from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from fathom_async import _logging


@pytest.fixture
def fresh_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("fathom_async")
    saved = (logger.level, list(logger.handlers), _logging._configured)
    _logging._configured = False
    yield logger
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    _logging._configured = saved[2]


@pytest.mark.parametrize(("value", "level"), [("debug", logging.DEBUG), ("INFO", logging.INFO)])
def test_fathom_log_turns_logging_on(
    monkeypatch: pytest.MonkeyPatch, fresh_logger: logging.Logger, value: str, level: int
) -> None:
    monkeypatch.setenv("FATHOM_LOG", value)
    _logging.setup_logging()
    assert fresh_logger.level == level
    assert len(fresh_logger.handlers) == 1
    _logging.setup_logging()  # once per process
    assert len(fresh_logger.handlers) == 1


def test_without_fathom_log_nothing_is_attached(
    monkeypatch: pytest.MonkeyPatch, fresh_logger: logging.Logger
) -> None:
    monkeypatch.setenv("FATHOM_LOG", "loud")
    before = list(fresh_logger.handlers)
    _logging.setup_logging()
    assert fresh_logger.handlers == before


def test_secret_headers_are_redacted() -> None:
    headers = {"Authorization": "Bearer s3cret", "cookie": "a=b", "Accept": "application/json"}
    assert _logging.redact_headers(headers) == {
        "Authorization": "<redacted>", "cookie": "<redacted>", "Accept": "application/json"
    }
