"""Optional bearer-token auth (``SERVING_API_TOKEN``, from the environment or a Secret).

When a token is configured, every route but the probes (``/v2/health/live``,
``/v2/health/ready``, ``/health``) needs ``Authorization: Bearer <token>``; the comparison is
constant-time (:func:`hmac.compare_digest`). Unset or empty: no auth.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from signalstack.serving.errors import UnauthorizedError

_bearer = HTTPBearer(auto_error=False, description="SERVING_API_TOKEN, when one is set")


def token_matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def require_token(
    token: SecretStr | None,
) -> Callable[..., Coroutine[Any, Any, None]]:
    """A dependency checking the bearer token (a no-op when ``token`` is unset or empty)."""
    expected = token.get_secret_value() if token is not None else ""

    async def check(
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> None:
        if not expected:
            return
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise UnauthorizedError("this route needs Authorization: Bearer <SERVING_API_TOKEN>")
        if not token_matches(expected, credentials.credentials):
            raise UnauthorizedError("the bearer token is wrong")

    return check


__all__ = ["require_token", "token_matches"]
