"""One error shape for the whole API: {"detail", "code", "fields"}.

A lost database connection (PostgreSQL restarting or unreachable; also serialization
failures and deadlocks, which are OperationalError too) is a clean, retryable 503 with
Retry-After, never a 500 with a stack trace. Writes are idempotent on retry (a repeated submit
returns the same annotation), and CONN_HEALTH_CHECKS gives the next request a fresh
connection.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.exceptions import ApplicationError

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 5


def _django_validation_fields(exc: DjangoValidationError) -> dict[str, Any]:
    if hasattr(exc, "message_dict"):
        return dict(exc.message_dict)
    return {"non_field_errors": exc.messages}


def database_unavailable_response() -> Response:
    """503 {"detail", "code": "database_unavailable"} with Retry-After."""
    body = {
        "detail": "The database is unavailable right now. Retry shortly.",
        "code": "database_unavailable",
        "fields": {},
    }
    headers = {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
    return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)


def _database_lost(exc: Exception) -> Response:
    # The broken connection is closed when the request ends (errors_occurred), and
    # CONN_HEALTH_CHECKS replaces a stale persistent one on the next request.
    logger.warning("Database unavailable: %s: %s", type(exc).__name__, exc)
    return database_unavailable_response()


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map domain, Django and DRF errors to {"detail", "code", "fields"}."""
    if isinstance(exc, OperationalError | InterfaceError):
        return _database_lost(exc)
    if isinstance(exc, ApplicationError):
        body = {"detail": exc.message, "code": exc.code, "fields": exc.fields}
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_django_validation_fields(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = (
            response.data
            if isinstance(response.data, dict)
            else {"non_field_errors": response.data}
        )
        response.data = {"detail": "Invalid input.", "code": "invalid", "fields": fields}
        response.status_code = status.HTTP_400_BAD_REQUEST
    elif isinstance(exc, exceptions.APIException):
        detail = (
            response.data.get("detail", str(exc)) if isinstance(response.data, dict) else exc.detail
        )
        response.data = {
            "detail": str(detail),
            "code": exc.get_codes() if isinstance(exc.get_codes(), str) else "error",
            "fields": {},
        }
    return response
