"""Request ids in logs: the middleware, a log filter, a JSON formatter and the Celery hooks.

Every HTTP request gets an id: a valid incoming `X-Request-ID` header (what a proxy or client
sent) or a new uuid4 hex. It is kept in a context variable for the request's lifetime, echoed
in the `X-Request-ID` response header, and added to every log record by `RequestIdFilter`
(with the user id once authentication has run). Inside a Celery task the task id is the
request id, and the id of the request that enqueued the task travels in the message headers as
`parent_request_id`. `JsonFormatter` writes one JSON object per line for log collectors.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import LazyObject, empty

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The Celery message header that carries the enqueuing request's id to the worker.
TASK_HEADER = "assay_request_id"
# What the filter writes when there is no request id or user (plain formats show it).
MISSING = "-"

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "user_id",
    "parent_request_id",
}


@dataclass(frozen=True, slots=True)
class LogContext:
    """What the logs of the current request or task are tagged with."""

    request_id: str
    request: HttpRequest | None = None
    parent_request_id: str | None = None


_context: ContextVar[LogContext | None] = ContextVar("assay_log_context", default=None)
# Tokens of running tasks, so an eager task inside a request restores the request's context.
_task_tokens: dict[str, Token[LogContext | None]] = {}


def request_id_is_valid(value: str | None) -> bool:
    """Whether `value` is an acceptable request id: 1-64 of [A-Za-z0-9._-]."""
    return bool(value) and REQUEST_ID_PATTERN.fullmatch(value) is not None


def request_id_new() -> str:
    """A fresh request id (uuid4 hex)."""
    return uuid.uuid4().hex


def request_id_get() -> str | None:
    """The id of the request or task being handled in this context, if any."""
    context = _context.get()
    return context.request_id if context else None


def log_context_get() -> LogContext | None:
    """The current log context (request or task), if any."""
    return _context.get()


def _user_id_of(request: HttpRequest | None) -> int | str | None:
    """The authenticated user's id, without forcing a lazy user to load."""
    if request is None:
        return None
    user = request.__dict__.get("user")
    if user is None or (isinstance(user, LazyObject) and user._wrapped is empty):
        return None
    if not getattr(user, "is_authenticated", False):
        return None
    return user.pk


def _context_clear(**_: Any) -> None:
    _context.set(None)


class RequestIdMiddleware:
    """Give each request an id, keep it in context for the logs, echo it in the response.

    The context stays set until the response is closed (`request_finished`), so Django's own
    "Not Found"/"Internal Server Error" records, logged after the middleware chain returns,
    carry the id too.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        request_finished.connect(_context_clear, dispatch_uid="core.logging.context_clear")

    def _start(self, request: HttpRequest) -> str:
        incoming = request.headers.get(REQUEST_ID_HEADER)
        request_id = incoming if request_id_is_valid(incoming) else request_id_new()
        request.request_id = request_id  # type: ignore[attr-defined]
        _context.set(LogContext(request_id=request_id, request=request))
        return request_id

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        request_id = self._start(request)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id  # type: ignore[index]
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = self._start(request)
        response = await self.get_response(request)  # type: ignore[misc]
        response[REQUEST_ID_HEADER] = request_id
        return response


class RequestIdFilter(logging.Filter):
    """Add `request_id`, `user_id` and `parent_request_id` to every record ("-" when unknown).

    Attach it to handlers, so records propagating from any logger get the fields. Values a
    caller passed explicitly (`extra={"request_id": ...}`) are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        if not hasattr(record, "request_id"):
            record.request_id = (context.request_id if context else None) or MISSING
        if not hasattr(record, "user_id"):
            user_id = _user_id_of(context.request if context else None)
            record.user_id = MISSING if user_id is None else user_id
        if not hasattr(record, "parent_request_id"):
            record.parent_request_id = (context.parent_request_id if context else None) or MISSING
        return True


def _json_default(value: object) -> str:
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, request_id,
    user_id, parent_request_id when set, exc_info and stack_info as text when present, and
    every `extra=` field. Values JSON cannot encode are written as their str().
    """

    def format(self, record: logging.LogRecord) -> str:
        RequestIdFilter().filter(record)  # works without the filter configured too
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": None if record.request_id == MISSING else record.request_id,
            "user_id": None if record.user_id == MISSING else record.user_id,
        }
        if record.parent_request_id != MISSING:
            entry["parent_request_id"] = record.parent_request_id
        if record.exc_info:
            entry["exc_info"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = value
        return json.dumps(entry, default=_json_default, ensure_ascii=False)


# --- Celery -------------------------------------------------------------------------------


def _header_of(task_request: Any) -> str | None:
    """The enqueuing request's id from a task's message headers (worker or `apply`)."""
    if task_request is None:
        return None
    value = task_request.get(TASK_HEADER) or (task_request.headers or {}).get(TASK_HEADER)
    return value if isinstance(value, str) else None


def _task_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if not task_id:
        return
    current = _context.get()
    parent = _header_of(getattr(task, "request", None))
    if not request_id_is_valid(parent):
        # Eager tasks run inside the enqueuing request: its id is the parent.
        parent = current.request_id if current else None
    _task_tokens[task_id] = _context.set(LogContext(request_id=task_id, parent_request_id=parent))


def _task_postrun(task_id: str | None = None, **_: Any) -> None:
    token = _task_tokens.pop(task_id, None) if task_id else None
    if token is None:
        return
    try:
        _context.reset(token)
    except ValueError:  # set in another context: nothing of ours to restore here
        _context.set(None)


def _before_task_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = request_id_get()
    if headers is not None and request_id and TASK_HEADER not in headers:
        headers[TASK_HEADER] = request_id


def _after_setup_logger(logger: logging.Logger | None = None, **_: Any) -> None:
    """Give the handlers Celery's worker installs the request-id fields too."""
    if logger is None:
        return
    for handler in logger.handlers:
        if not any(isinstance(existing, RequestIdFilter) for existing in handler.filters):
            handler.addFilter(RequestIdFilter())


def connect_celery_logging() -> None:
    """Tag task logs with the task id (and the enqueuing request's id); idempotent.

    Called once per process from `core.apps.CoreConfig.ready()`.
    """
    from celery import signals

    signals.task_prerun.connect(_task_prerun, weak=False, dispatch_uid="core.logging.prerun")
    signals.task_postrun.connect(_task_postrun, weak=False, dispatch_uid="core.logging.postrun")
    signals.before_task_publish.connect(
        _before_task_publish, weak=False, dispatch_uid="core.logging.publish"
    )
    signals.after_setup_logger.connect(
        _after_setup_logger, weak=False, dispatch_uid="core.logging.setup_logger"
    )
    signals.after_setup_task_logger.connect(
        _after_setup_logger, weak=False, dispatch_uid="core.logging.setup_task_logger"
    )
