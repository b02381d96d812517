"""Two web processes behind one address: two gunicorn masters bound to the same port.

Each master stands for a web container: its own gunicorn (platform/gunicorn.conf.py with
GUNICORN_REUSE_PORT=1, so both can bind the port and the kernel spreads connections over them),
production settings, and nothing shared but PostgreSQL (this test's database) and Redis. Which
master answered a request is read from its own access log, by the request's X-Request-ID.

What must hold for web to scale out: a session started on one master is valid on the other, the
sign-in lockout counts failures on both, and concurrent submits through the shared port lose
nothing and double-assign nothing. A process-local cache (LocMem) fails the lockout test; a
master without reuse_port cannot bind and fails them all.

The port is a free one, or ASSAY_TEST_SCALE_OUT_PORT when set (machines with assigned ranges).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection
from django.db.models import Count, F
from rest_framework.authtoken.models import Token

from annotation.models import Annotation, Item
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.conftest import TEST_REDIS_URL
from tests.crowd.factories import make_annotator

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
START_TIMEOUT = 60  # seconds; two masters import Django at once on a busy 2-core machine
SEEN_BOTH_ATTEMPTS = 60  # requests before giving up on the kernel ever choosing one master
PASSWORD = "correct-horse-battery"

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}: this test must run in CI.", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Master:
    name: str
    proc: subprocess.Popen
    log: Path

    def answered(self, request_id: str) -> bool:
        return f"rid={request_id}" in self.log.read_text(errors="replace")


@dataclass
class Answer:
    status: int
    body: bytes
    headers: http.client.HTTPMessage
    master: str


class SharedPort:
    """HTTP to the one address both masters listen on; each answer says which master gave it."""

    def __init__(self, port: int, masters: list[Master]) -> None:
        self.port = port
        self.masters = masters

    def request(self, method: str, path: str, *, body: bytes = b"", **headers: str) -> Answer:
        request_id = uuid.uuid4().hex
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers={"X-Request-ID": request_id, **headers})
            response = conn.getresponse()
            answer = (response.status, response.read(), response.headers)
        finally:
            conn.close()
        return Answer(*answer, master=self._who(request_id))

    def _who(self, request_id: str) -> str:
        deadline = time.monotonic() + 5  # the access log line follows the response
        while time.monotonic() < deadline:
            for master in self.masters:
                if master.answered(request_id):
                    return master.name
            time.sleep(0.02)
        raise AssertionError(f"no master logged request {request_id}")

    def json(self, method: str, path: str, payload: dict, **headers: str) -> Answer:
        return self.request(
            method,
            path,
            body=json.dumps(payload).encode(),
            **{"Content-Type": "application/json", **headers},
        )


def _start(name: str, port: int, log_dir: Path, env: dict[str, str]) -> Master:
    log = log_dir / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(GUNICORN),
                "config.wsgi",
                "-c",
                "platform/gunicorn.conf.py",
                "-b",
                f"127.0.0.1:{port}",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Master(name, proc, log)


def _wait_until_both_serve(shared: SharedPort) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    waiting = {master.name for master in shared.masters}
    while waiting:
        for master in shared.masters:
            if master.proc.poll() is not None:
                pytest.fail(f"{master.name} exited:\n{master.log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"not serving after {START_TIMEOUT} s: {sorted(waiting)}")
        try:
            answer = shared.request("GET", "/healthz")
        except (OSError, AssertionError):
            time.sleep(0.3)
            continue
        if answer.status == 200:
            waiting.discard(answer.master)


@pytest.fixture(scope="module")
def shared(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[SharedPort]:
    """Two gunicorn masters ("web containers") on one port, on this test run's database."""
    if not GUNICORN.exists():
        _missing("gunicorn is not installed in .venv")
    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            _missing("PostgreSQL is not configured (set DATABASE_URL to a PostgreSQL database)")
        params = connection.settings_dict
    port = int(os.environ.get("ASSAY_TEST_SCALE_OUT_PORT") or _free_port())
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DATABASE_URL": (
            f"postgres://{params['USER']}:{params['PASSWORD']}@{params['HOST'] or '127.0.0.1'}:"
            f"{params['PORT'] or 5432}/{params['NAME']}"
        ),
        "REDIS_URL": TEST_REDIS_URL,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_LOG_LEVEL": "WARNING",
        "WEB_CONCURRENCY": "1",  # one process per master: any process-local state shows
        "GUNICORN_THREADS": "4",
        "GUNICORN_REUSE_PORT": "1",
        "GUNICORN_LOG_LEVEL": "warning",
        "GUNICORN_MAX_REQUESTS": "0",
    }
    log_dir = tmp_path_factory.mktemp("scale_out")
    masters = [_start(name, port, log_dir, env) for name in ("web-a", "web-b")]
    try:
        shared = SharedPort(port, masters)
        _wait_until_both_serve(shared)
        yield shared
    finally:
        for master in masters:
            if master.proc.poll() is None:
                master.proc.send_signal(signal.SIGTERM)
        for master in masters:
            try:
                master.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                master.proc.kill()
                master.proc.wait(timeout=10)


def _until_both_masters(call) -> list[Answer]:
    """Repeat `call` until both masters have answered it at least once."""
    answers: list[Answer] = []
    for _ in range(SEEN_BOTH_ATTEMPTS):
        answers.append(call())
        seen = {answer.master for answer in answers}
        if len(seen) == 2:
            return answers
    pytest.fail(f"only {seen} answered {SEEN_BOTH_ATTEMPTS} requests through the shared port")


def _user_with_password(username: str):
    """A user whose password the masters can check: the test settings hash with MD5, which
    production does not accept; PBKDF2 with few iterations keeps each sign-in cheap."""
    user = UserFactory(username=username)
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, secrets.token_hex(8), iterations=1000)
    user.save(update_fields=["password"])
    return user


def _address() -> str:
    """A client address of this test's own: lockout counters in Redis outlive the test."""
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def test_scale_out_session_from_one_master_is_valid_on_the_other(shared):
    user = _user_with_password(f"session-{uuid.uuid4().hex[:8]}")
    csrf = secrets.token_hex(16)  # an unmasked 32-character secret, as the cookie holds

    login = shared.request(
        "POST",
        "/accounts/login/",
        body=f"username={user.username}&password={PASSWORD}&csrfmiddlewaretoken={csrf}".encode(),
        **{"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={csrf}"},
    )
    assert login.status == 302, (login.status, login.body[:300])
    cookies = ";".join(login.headers.get_all("Set-Cookie") or [])
    session = cookies.split("sessionid=", 1)[1].split(";", 1)[0]
    answers = _until_both_masters(
        lambda: shared.request("GET", "/api/v1/projects/", Cookie=f"sessionid={session}")
    )
    anonymous = shared.request("GET", "/api/v1/projects/")

    assert login.status == 302
    assert {answer.master for answer in answers} == {"web-a", "web-b"}
    assert [answer.status for answer in answers] == [200] * len(answers)
    assert anonymous.status == 401


def test_scale_out_lockout_counts_failures_on_both_masters(shared):
    limit = settings.ASSAY_LOGIN_FAILURE_LIMIT
    address = _address()

    def attempt(username: str, password: str) -> Answer:
        payload = {"username": username, "password": password}
        return shared.json("POST", "/api/v1/auth/token/", payload, **{"X-Forwarded-For": address})

    for _ in range(4):  # the first limit-1 failures must land on both masters
        user = _user_with_password(f"lockout-{uuid.uuid4().hex[:8]}")
        failures = [attempt(user.username, "wrong") for _ in range(limit - 1)]
        if len({answer.master for answer in failures}) == 2:
            break
    else:
        pytest.fail("the kernel sent every failed sign-in of four rounds to one master")
    last = attempt(user.username, "wrong")
    refusals = _until_both_masters(lambda: attempt(user.username, PASSWORD))

    assert [answer.status for answer in failures + [last]] == [400] * limit
    for answer in refusals:  # the right password too: both masters see the shared count
        assert answer.status == 429, (answer.master, answer.body)
        assert json.loads(answer.body)["code"] == "locked_out"


def test_scale_out_concurrent_submits_lose_nothing_and_double_assign_nothing(shared):
    project = ProjectFactory(overlap=2)
    ItemFactory.create_batch(40, project=project, target=2)
    tokens = [
        Token.objects.create(user=make_annotator(project, f"burst-{uuid.uuid4().hex[:8]}")).key
        for _ in range(8)
    ]
    accepted: list[tuple[int, str]] = []  # (annotation id, master)
    problems: list[str] = []
    lock = threading.Lock()

    def annotate(token: str) -> None:
        try:
            label(token)
        except Exception as error:  # noqa: BLE001 - a transport failure is a finding too
            with lock:
                problems.append(repr(error))

    def label(token: str) -> None:
        headers = {"Authorization": f"Token {token}"}
        for _ in range(8):
            claim = shared.json("POST", f"/api/v1/projects/{project.pk}/next/", {}, **headers)
            if claim.status == 204:
                return
            if claim.status != 200:
                with lock:
                    problems.append(f"next {claim.status} {claim.body[:200]!r}")
                return
            assignment = json.loads(claim.body)["assignment"]
            submit = shared.json(
                "POST",
                f"/api/v1/assignments/{assignment}/submit/",
                {"label": "positive", "duration_ms": 900},
                **headers,
            )
            with lock:
                if submit.status == 200:
                    accepted.append((json.loads(submit.body)["annotation"]["id"], submit.master))
                else:
                    problems.append(f"submit {submit.status} {submit.body[:200]!r}")

    threads = [threading.Thread(target=annotate, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    stored = Annotation.objects.filter(item__project=project)
    assert problems == []
    assert not any(thread.is_alive() for thread in threads)
    assert len(accepted) == 8 * 8  # 64 of the 80 (item, annotator) slots
    assert {master for _, master in accepted} == {"web-a", "web-b"}
    assert sorted(stored.values_list("pk", flat=True)) == sorted(pk for pk, _ in accepted)
    assert not stored.values("item", "author").annotate(n=Count("pk")).filter(n__gt=1).exists()
    over = Item.objects.filter(project=project).annotate(n=Count("annotations"))
    assert not over.filter(n__gt=F("target")).exists()
    assert not over.exclude(annotation_count=F("n")).exists()
