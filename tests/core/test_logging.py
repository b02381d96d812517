"""Request ids: the middleware, the log filter, JSON lines, Celery tasks and the settings."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from celery import signals
from django.conf import settings as django_settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import include, path
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.celery_app import app
from core.logging import (
    MISSING,
    TASK_HEADER,
    JsonFormatter,
    LogContext,
    RequestIdFilter,
    RequestIdMiddleware,
    connect_celery_logging,
    log_context_get,
    request_id_get,
)
from tests.annotation.factories import UserFactory
from tests.core.test_deployment import PRODUCTION_ENV, PYTHON, ROOT, minimal_env

HEX32 = re.compile(r"[0-9a-f]{32}")
LOGGER = "assay.test_logging"


@app.task(name="tests.core.test_logging.log_inside_task")
def log_inside_task(word: str) -> str | None:
    logging.getLogger(LOGGER).info("task says %s", word)
    return request_id_get()


def logging_view(request: HttpRequest) -> HttpResponse:
    if request.GET.get("touch_user"):
        _ = request.user.is_authenticated
    logging.getLogger(LOGGER).info("inside the view", extra={"item_pk": 7})
    if request.GET.get("task"):
        log_inside_task.delay("hello")
    return JsonResponse({"request_id": request_id_get()})


def failing_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


class LoggingApiView(APIView):
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        logging.getLogger(LOGGER).info("inside the API")
        return Response({"request_id": request_id_get()})


def refusing_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("no", status=403)


urlpatterns = [
    path("refuse/", refusing_view),
    path("api-log/", LoggingApiView.as_view()),
    path("log/", logging_view),
    path("fail/", failing_view),
    path("", include("config.urls")),  # the namespaces the 404/500 templates link to
]


class ListHandler(logging.Handler):
    """Keeps records (after the filter ran) and their JSON lines."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.addFilter(RequestIdFilter())
        self.setFormatter(JsonFormatter())
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))

    def entries(self, logger: str = LOGGER) -> list[dict]:
        return [json.loads(line) for line in self.lines if json.loads(line)["logger"] == logger]


@pytest.fixture
def captured() -> Iterator[ListHandler]:
    handler = ListHandler()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


# --- Middleware -------------------------------------------------------------------------


def test_middleware_is_right_after_security_middleware():
    position = django_settings.MIDDLEWARE.index("core.logging.RequestIdMiddleware")
    assert django_settings.MIDDLEWARE[position - 1] == (
        "django.middleware.security.SecurityMiddleware"
    )


@pytest.mark.django_db
def test_valid_incoming_id_is_echoed(client):
    response = client.get("/accounts/login/", HTTP_X_REQUEST_ID="edge-1.Proxy_42")

    assert response.status_code == 200
    assert response["X-Request-ID"] == "edge-1.Proxy_42"


@pytest.mark.django_db
def test_missing_id_is_generated_fresh_per_request(client):
    first = client.get("/accounts/login/")["X-Request-ID"]
    second = client.get("/accounts/login/")["X-Request-ID"]

    assert HEX32.fullmatch(first)
    assert HEX32.fullmatch(second)
    assert first != second


@pytest.mark.django_db
@pytest.mark.parametrize(
    "incoming", ["", "has space", "semi;colon", "x" * 65, "ünïcode", "a\tb", "id/with/slash"]
)
def test_invalid_incoming_id_is_replaced(client, incoming):
    response = client.get("/accounts/login/", HTTP_X_REQUEST_ID=incoming)

    assert HEX32.fullmatch(response["X-Request-ID"])
    assert response["X-Request-ID"] != incoming


@pytest.mark.django_db
def test_longest_valid_id_is_kept(client):
    incoming = "a" * 64
    assert client.get("/accounts/login/", HTTP_X_REQUEST_ID=incoming)["X-Request-ID"] == incoming


@pytest.mark.django_db
def test_not_found_pages_carry_the_id(client):
    response = client.get("/no-such-page-anywhere/", HTTP_X_REQUEST_ID="missing-page")

    assert response.status_code == 404
    assert response["X-Request-ID"] == "missing-page"


@pytest.mark.urls(__name__)
def test_view_logs_carry_the_request_id_and_context_ends_with_the_request(db, client, captured):
    response = client.get("/log/", HTTP_X_REQUEST_ID="req-view-1")

    assert response.json() == {"request_id": "req-view-1"}
    [entry] = captured.entries()
    assert entry["request_id"] == "req-view-1"
    assert entry["message"] == "inside the view"
    assert entry["item_pk"] == 7
    assert entry["user_id"] is None
    assert request_id_get() is None
    assert log_context_get() is None


@pytest.mark.urls(__name__)
def test_authenticated_user_id_is_added_once_loaded(db, client, captured):
    user = UserFactory()
    client.force_login(user)

    client.get("/log/?touch_user=1", HTTP_X_REQUEST_ID="req-user")

    [entry] = captured.entries()
    assert entry["user_id"] == user.pk
    assert entry["request_id"] == "req-user"


@pytest.mark.urls(__name__)
def test_api_logs_carry_the_authenticated_user(db, client_for, captured):
    user = UserFactory()

    response = client_for(user).get("/api-log/", HTTP_X_REQUEST_ID="req-api")

    assert response.json() == {"request_id": "req-api"}
    assert response["X-Request-ID"] == "req-api"
    [entry] = captured.entries()
    assert entry["user_id"] == user.pk


@pytest.mark.urls(__name__)
def test_logging_never_loads_the_user_itself(db, client, captured):
    user = UserFactory()
    client.force_login(user)
    user_table = user._meta.db_table

    with CaptureQueriesContext(connection) as queries:
        client.get("/log/")

    assert not [q for q in queries.captured_queries if user_table in q["sql"]]
    [entry] = captured.entries()
    assert entry["user_id"] is None
    assert HEX32.fullmatch(entry["request_id"])


@pytest.mark.urls(__name__)
def test_django_request_errors_logged_after_the_view_carry_the_id(db, client, captured):
    client.raise_request_exception = False

    response = client.get("/fail/", HTTP_X_REQUEST_ID="req-boom")

    assert response.status_code == 500
    [entry] = captured.entries("django.request")
    assert entry["level"] == "ERROR"
    assert entry["request_id"] == "req-boom"
    assert "RuntimeError: boom" in entry["exc_info"]
    assert entry["status_code"] == 500


@pytest.mark.urls(__name__)
def test_not_found_warning_carries_the_id(db, client, captured):
    client.get("/nowhere/", HTTP_X_REQUEST_ID="req-404")

    [entry] = captured.entries("django.request")
    assert entry["level"] == "WARNING"
    assert entry["request_id"] == "req-404"
    assert request_id_get() is None


@pytest.mark.urls(__name__)
def test_error_responses_logged_after_the_middleware_chain_carry_the_id(db, client, captured):
    # Django logs a 4xx returned without an exception after every middleware has returned.
    response = client.get("/refuse/", HTTP_X_REQUEST_ID="req-403")

    assert response.status_code == 403
    [entry] = captured.entries("django.request")
    assert entry["message"] == "Forbidden: /refuse/"
    assert entry["request_id"] == "req-403"
    assert request_id_get() is None


def test_async_middleware_sets_context_and_header():
    seen: list[str | None] = []

    async def get_response(request: HttpRequest) -> HttpResponse:
        seen.append(request_id_get())
        return HttpResponse("ok")

    middleware = RequestIdMiddleware(get_response)
    request = RequestFactory().get("/", HTTP_X_REQUEST_ID="async-1")

    response = asyncio.run(middleware(request))

    assert seen == ["async-1"]
    assert response["X-Request-ID"] == "async-1"


# --- Filter and formatter -----------------------------------------------------------------


def _record(msg: str = "hello %s", args: tuple = ("world",), **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(LOGGER, logging.WARNING, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_filter_marks_missing_ids_outside_requests():
    record = _record()

    assert RequestIdFilter().filter(record) is True
    assert record.request_id == MISSING
    assert record.user_id == MISSING


def test_filter_adds_the_context_ids_and_keeps_explicit_ones():
    from core import logging as core_logging

    token = core_logging._context.set(LogContext(request_id="ctx-1", parent_request_id="p-1"))
    try:
        plain, explicit = _record(), _record(request_id="given")
        RequestIdFilter().filter(plain)
        RequestIdFilter().filter(explicit)
    finally:
        core_logging._context.reset(token)

    assert plain.request_id == "ctx-1"
    assert plain.parent_request_id == "p-1"
    assert explicit.request_id == "given"


def test_json_lines_parse_and_carry_fields():
    try:
        raise ValueError("bad value")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    record = _record(
        "count=%d", (3,), request_id="r-1", user_id=12, project_pk=5, odd=object(), tags=["a"]
    )
    record.exc_info = exc_info

    line = JsonFormatter().format(record)

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "count=3"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == LOGGER
    assert entry["request_id"] == "r-1"
    assert entry["user_id"] == 12
    assert entry["project_pk"] == 5
    assert entry["tags"] == ["a"]
    assert entry["odd"].startswith("<object object")
    assert "ValueError: bad value" in entry["exc_info"]
    assert entry["time"].endswith("+00:00")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])
    for internal in ("args", "msg", "levelno", "pathname", "exc_text", "parent_request_id"):
        assert internal not in entry


def test_json_line_without_context_has_null_ids():
    entry = json.loads(JsonFormatter().format(_record()))

    assert entry["request_id"] is None
    assert entry["user_id"] is None
    assert "exc_info" not in entry


# --- Celery -------------------------------------------------------------------------------


@pytest.fixture
def celery_logging(celery_eager):
    connect_celery_logging()
    return celery_eager


def test_task_logs_carry_the_task_id(celery_logging, captured):
    result = log_inside_task.delay("hi")

    assert result.get() == result.id
    [entry] = captured.entries()
    assert entry["message"] == "task says hi"
    assert entry["request_id"] == result.id
    assert "parent_request_id" not in entry
    assert request_id_get() is None


@pytest.mark.urls(__name__)
def test_task_enqueued_in_a_request_names_the_request_and_restores_it(
    db, client, celery_logging, captured, django_capture_on_commit_callbacks
):
    response = client.get("/log/?task=1", HTTP_X_REQUEST_ID="req-parent")

    assert response.json() == {"request_id": "req-parent"}
    view_entry, task_entry = captured.entries()
    assert view_entry["request_id"] == "req-parent"
    assert task_entry["parent_request_id"] == "req-parent"
    assert HEX32.fullmatch(task_entry["request_id"].replace("-", ""))
    assert task_entry["request_id"] != "req-parent"


def test_task_reads_the_enqueuing_request_id_from_its_headers(celery_logging, captured):
    result = log_inside_task.apply(args=("x",), headers={TASK_HEADER: "req-from-web"})

    assert result.get() == result.id
    [entry] = captured.entries()
    assert entry["request_id"] == result.id
    assert entry["parent_request_id"] == "req-from-web"


def test_publishing_adds_the_current_request_id_to_the_headers():
    from core import logging as core_logging

    connect_celery_logging()
    headers: dict[str, str] = {}
    token = core_logging._context.set(LogContext(request_id="req-pub"))
    try:
        signals.before_task_publish.send(sender="some.task", headers=headers, body=())
    finally:
        core_logging._context.reset(token)
    outside: dict[str, str] = {}
    signals.before_task_publish.send(sender="some.task", headers=outside, body=())

    assert headers == {TASK_HEADER: "req-pub"}
    assert outside == {}


def test_connect_celery_logging_is_idempotent(celery_logging, captured):
    connect_celery_logging()
    connect_celery_logging()

    log_inside_task.delay("once")

    assert len(captured.entries()) == 1


# --- Settings -----------------------------------------------------------------------------

SCRIPT = """
import logging, django
django.setup()
from django.conf import settings
at = settings.MIDDLEWARE.index("core.logging.RequestIdMiddleware")
assert settings.MIDDLEWARE[at - 1] == "django.middleware.security.SecurityMiddleware"
try:
    raise KeyError("k")
except KeyError:
    logging.getLogger("assay.check").exception("it broke", extra={"project_pk": 9})
"""


def _run(settings_module: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our interpreter, a fixed script
        [PYTHON, "-c", SCRIPT],
        cwd=ROOT,
        env=minimal_env(DJANGO_SETTINGS_MODULE=settings_module, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_settings_import_and_log_json_lines():
    result = _run("config.settings.production", **PRODUCTION_ENV)

    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    entry = json.loads(lines[0])
    assert entry["logger"] == "assay.check"
    assert entry["level"] == "ERROR"
    assert entry["message"] == "it broke"
    assert entry["project_pk"] == 9
    assert entry["request_id"] is None
    assert "KeyError: 'k'" in entry["exc_info"]


def test_local_settings_log_plain_lines_with_the_request_id():
    result = _run("config.settings.local", REDIS_URL="redis://localhost:6379/0")

    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert re.search(r" ERROR assay\.check \[-\] it broke$", first), result.stderr
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)


# --- A real worker ------------------------------------------------------------------------


@pytest.mark.redis
def test_real_worker_logs_json_with_task_and_request_ids(tmp_path):
    """Production settings in a worker: task logs are JSON lines tagged with both ids."""
    from kombu import Connection

    from tests.conftest import TEST_REDIS_URL
    from tests.core.logging_worker_tasks import log_in_worker

    broker = TEST_REDIS_URL.rsplit("/", 1)[0] + "/12"
    queue = f"o2-logging-{uuid.uuid4().hex}"
    log_path = tmp_path / "worker.log"
    env = minimal_env(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        **{**PRODUCTION_ENV, "REDIS_URL": broker},
    )
    command = [PYTHON, "-m", "celery", "-A", "config.celery_app", "worker", "-P", "solo"]
    command += ["-l", "INFO", "-Q", queue, "-I", "tests.core.logging_worker_tasks"]
    command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
    with log_path.open("w") as log:
        process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        connect_celery_logging()
        from core import logging as core_logging

        token = core_logging._context.set(LogContext(request_id="web-req-9"))
        try:
            with Connection(broker) as connection:
                task_id = log_in_worker.apply_async(
                    args=("hello",), queue=queue, connection=connection
                ).id
        finally:
            core_logging._context.reset(token)
        deadline = time.monotonic() + 60
        entries: list[dict] = []
        while time.monotonic() < deadline and process.poll() is None:
            lines = log_path.read_text().splitlines()
            entries = [json.loads(line) for line in lines if line.startswith("{")]
            if any(entry["logger"] == "assay.worker_check" for entry in entries):
                break
            time.sleep(0.2)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    [entry] = [entry for entry in entries if entry["logger"] == "assay.worker_check"]
    assert entry["message"] == "worker says hello", log_path.read_text()
    assert entry["request_id"] == task_id
    assert entry["parent_request_id"] == "web-req-9"
    assert entry["user_id"] is None
