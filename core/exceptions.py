"""Errors raised by services; the API and the views turn them into responses."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A domain rule refused the operation; `fields` maps a field name to its messages."""

    status_code = 400
    code = "invalid"

    def __init__(
        self, message: str, *, fields: dict[str, Any] | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        if code is not None:
            self.code = code


class ConflictError(ApplicationError):
    """The operation conflicts with the current state (expired reservation, full item)."""

    status_code = 409
    code = "conflict"


class NotAllowedError(ApplicationError):
    """The actor may see the object but not do this to it."""

    status_code = 403
    code = "permission_denied"
