"""Structured JSON logs (structlog over the stdlib), with secrets redacted before rendering.

Every record is one JSON object per line on stderr: ``ts``, ``level``, ``logger``, ``event`` and
the bound key/values. Values of keys that look like secrets are masked, and any configured secret
value found anywhere in a string is replaced, so an API key pasted into a URL or an exception
message never reaches the log.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "***"
_SECRET_KEY = re.compile(r"(api_?key|apikey|password|passwd|secret|token|authorization)", re.I)


class SecretRedactor:
    """structlog processor masking secret-looking keys and known secret values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for s in self.secrets:
                value = value.replace(s, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._field(k, v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._scrub(v) for v in value)
        return value

    def _field(self, key: str, value: Any) -> Any:
        if _SECRET_KEY.search(str(key)) and value not in (None, ""):
            return REDACTED
        return self._scrub(value)

    def __call__(
        self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for k in list(event_dict):
            if k == "event":
                event_dict[k] = self._scrub(event_dict[k])
            else:
                event_dict[k] = self._field(k, event_dict[k])
        return event_dict


def configure_logging(
    level: str = "INFO", fmt: str = "json", secrets: Iterable[str] = (), stream: Any = None
) -> None:
    """Configure structlog; stdlib logging (uvicorn, kafka...) goes through the same renderer."""
    redactor = SecretRedactor(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
