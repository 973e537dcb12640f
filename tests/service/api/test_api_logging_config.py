"""Log lines: JSON with the request id, secrets redacted, tracebacks without messages."""

import json
import logging

from service.api.logging_config import (
    REDACTED,
    JsonFormatter,
    RequestIdFilter,
    SecretRedactionFilter,
    TextFormatter,
)
from service.api.request_context import _request_id


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("service.api.test", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_line_has_time_level_message_request_id_and_extras() -> None:
    token = _request_id.set("req-7")
    try:
        record = _record("answered %s", 200, status=200, duration_ms=12.5)
        RequestIdFilter().filter(record)
    finally:
        _request_id.reset(token)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "answered 200" and entry["level"] == "INFO"
    assert entry["request_id"] == "req-7" and entry["status"] == 200 and entry["duration_ms"] == 12.5
    assert entry["time"].endswith("Z") and entry["logger"] == "service.api.test"


def test_secrets_are_redacted() -> None:
    record = _record("header was %s", "Bearer my-secret-key-1")
    SecretRedactionFilter(["my-secret-key-1"]).filter(record)
    assert record.getMessage() == f"header was Bearer {REDACTED}"


def test_text_format_includes_the_request_id() -> None:
    record = _record("hello")
    RequestIdFilter().filter(record)
    assert "[None] hello" in TextFormatter().format(record)
