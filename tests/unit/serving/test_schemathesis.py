"""Property-based fuzzing of the app against its own OpenAPI schema (schemathesis): for every
operation, generated requests (valid and invalid) never get a 5xx, and every response —
status code, content type and body — is what the schema documents. Bounded examples."""

from __future__ import annotations

import itertools
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.unit.serving.serving_helpers import TestClient

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_no_server_error_and_every_response_as_documented(client: TestClient) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14  # every route, /v2 and /predict and /health
    ran: list[str] = []
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=8,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            fuzz()
        except Unsatisfiable:  # nothing to negate: an operation without parameters or body
            assert mode is GenerationMode.NEGATIVE, operation.label
            ran.append(f"{operation.label} (no negative case)")
        else:
            ran.append(f"{operation.label} {mode.value}")
    assert len(ran) == 2 * len(operations)
