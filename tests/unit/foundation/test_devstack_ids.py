"""Kafka cluster ids the devstack generates are ones kafka-storage accepts."""

from __future__ import annotations

import base64
import uuid

import pytest

from signalstack.devstack import kafka


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xf8 → first base64 character "-": kafka-storage reads "-t -…" as a missing argument.
    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x10" * 16)])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    got = kafka.kafka_uuid()
    assert got == base64.urlsafe_b64encode(b"\x10" * 16).rstrip(b"=").decode()
    assert len(got) == 22 and not got.startswith("-")
