"""One exception tree for the whole package; each error knows its exit and HTTP status."""

from __future__ import annotations


class SignalStackError(Exception):
    """Root of every error raised on purpose by SignalStack."""

    exit_code: int = 1
    http_status: int = 500


class ConfigError(SignalStackError):
    """The configuration (environment or files) is invalid; the message names the variable."""

    exit_code = 2


class NotImplementedYetError(SignalStackError):
    """A command whose issue has not landed yet."""

    exit_code = 3


class ComponentMissingError(SignalStackError):
    """A real component (Kafka, TimescaleDB...) is not installed; the message gives the fix."""

    exit_code = 4
