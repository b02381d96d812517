"""Security headers on every kind of response, and lockout after repeated failed sign-ins."""

from __future__ import annotations

import re
import secrets

import pytest
from django.test import Client
from rest_framework.test import APIClient

from core import security
from tests.annotation.factories import UserFactory

pytestmark = pytest.mark.django_db

EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'; object-src 'none'"
)
PASSWORD = "pass-word-123"


def assert_security_headers(response, csp: str = EXPECTED_CSP) -> None:
    assert response["Content-Security-Policy"] == csp
    assert response["Permissions-Policy"] == "camera=(), microphone=(), geolocation=()"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


# --- Headers -------------------------------------------------------------------------------------


def test_html_page_has_security_headers():
    response = Client().get("/accounts/login/")

    assert response.status_code == 200
    assert_security_headers(response)


def test_html_page_of_a_signed_in_user_has_security_headers(owner):
    client = Client()
    client.force_login(owner)

    response = client.get("/projects/")

    assert response.status_code == 200
    assert_security_headers(response)


def test_api_response_has_security_headers(owner):
    client = APIClient()
    client.force_authenticate(owner)

    response = client.get("/api/v1/projects/")
    refused = APIClient().get("/api/v1/projects/")

    assert response.status_code == 200
    assert_security_headers(response)
    assert refused.status_code in (401, 403)
    assert_security_headers(refused)


def test_not_found_page_has_security_headers():
    response = Client().get("/no-such-page/")

    assert response.status_code == 404
    assert_security_headers(response)


def test_static_file_has_security_headers(settings):
    """WhiteNoise answers static files before the views: the headers still apply."""
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True

    response = Client().get("/static/js/htmx-config.js")

    assert response.status_code == 200
    assert response.streaming
    assert_security_headers(response)


def test_api_docs_page_alone_allows_its_inline_start_up_script():
    response = Client().get("/api/v1/docs/")

    assert response.status_code == 200
    assert_security_headers(response, csp=security.DOCS_CONTENT_SECURITY_POLICY)
    assert "script-src 'self' 'unsafe-inline'" in response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert (
        "unsafe-inline"
        not in Client().get("/api/v1/schema/")["Content-Security-Policy"].split("style-src")[0]
    )


def test_templates_hold_no_inline_scripts_or_event_handler_attributes():
    """The CSP forbids inline scripts: a template that used one would silently break."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    templates = [
        path
        for folder in ("templates", "annotation", "crowd", "quality", "core")
        for path in (root / folder).rglob("*.html")
    ]
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
    handler = re.compile(r"\son[a-z]+\s*=|\shx-on[:-]", re.IGNORECASE)
    offenders = [
        str(path.relative_to(root))
        for path in templates
        if inline_script.search(path.read_text()) or handler.search(path.read_text())
    ]

    assert templates
    assert offenders == []


# --- Lockout -------------------------------------------------------------------------------------


@pytest.fixture
def address():
    """A documentation-range address of this test's own, so no other test shares its counters."""
    return f"198.51.100.{secrets.randbelow(250) + 1}-{secrets.token_hex(4)}"


@pytest.fixture
def limits(settings):
    settings.ASSAY_LOGIN_FAILURE_LIMIT = 3
    settings.ASSAY_LOGIN_IP_FAILURE_LIMIT = 5
    settings.ASSAY_LOGIN_LOCKOUT_SECONDS = 600
    return settings


def form_login(address: str, username: str, password: str):
    return Client(REMOTE_ADDR=address).post(
        "/accounts/login/", {"username": username, "password": password}
    )


def token_login(address: str, username: str, password: str):
    return APIClient(REMOTE_ADDR=address).post(
        "/api/v1/auth/token/", {"username": username, "password": password}, format="json"
    )


def test_login_form_locks_out_after_the_failure_limit(limits, address):
    user = UserFactory(username=f"alice-{address}")

    failures = [form_login(address, user.username, "wrong").status_code for _ in range(3)]
    locked = form_login(address, user.username, PASSWORD)

    assert failures == [200, 200, 200]
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.content.decode()
    assert "try again in 10 minutes" in locked.content.decode()
    assert 590 <= int(locked["Retry-After"]) <= 600
    assert "_auth_user_id" not in locked.wsgi_request.session
    assert_security_headers(locked)


def test_token_endpoint_locks_out_after_the_failure_limit(limits, address):
    user = UserFactory(username=f"bob-{address}")

    failures = [token_login(address, user.username, "wrong").status_code for _ in range(3)]
    locked = token_login(address, user.username, PASSWORD)

    assert failures == [400, 400, 400]
    assert locked.status_code == 429
    body = locked.json()
    assert body["code"] == "locked_out"
    assert "try again in 10 minutes" in body["detail"]
    assert "token" not in body
    assert int(locked["Retry-After"]) > 0


def test_lockout_is_per_username_and_address(limits, address):
    user = UserFactory(username=f"carol-{address}")
    other = UserFactory(username=f"dave-{address}")
    for _ in range(3):
        form_login(address, user.username, "wrong")

    other_user_same_address = form_login(address, other.username, PASSWORD)
    same_user_other_address = form_login(f"{address}-elsewhere", user.username, PASSWORD)

    assert other_user_same_address.status_code == 302
    assert same_user_other_address.status_code == 302


def test_address_locks_out_after_its_own_limit_across_usernames(limits, address):
    user = UserFactory(username=f"erin-{address}")
    for n in range(5):
        form_login(address, f"guess-{n}", "wrong")

    locked = form_login(address, user.username, PASSWORD)

    assert locked.status_code == 429


def test_successful_login_resets_the_failure_count(limits, address):
    user = UserFactory(username=f"frank-{address}")
    for _ in range(2):
        form_login(address, user.username, "wrong")
    assert form_login(address, user.username, PASSWORD).status_code == 302
    for _ in range(2):
        form_login(address, user.username, "wrong")

    again = form_login(address, user.username, PASSWORD)

    assert again.status_code == 302


def test_successful_token_exchange_resets_the_failure_count(limits, address):
    user = UserFactory(username=f"grace-{address}")
    for _ in range(2):
        token_login(address, user.username, "wrong")
    assert token_login(address, user.username, PASSWORD).status_code == 200
    for _ in range(2):
        token_login(address, user.username, "wrong")

    assert token_login(address, user.username, PASSWORD).status_code == 200


def test_lockout_does_not_reveal_whether_the_username_exists(limits, address):
    user = UserFactory(username=f"heidi-{address}")
    ghost = f"nobody-{address}"

    real = [form_login(address, user.username, "wrong") for _ in range(4)]
    fake = [form_login(f"{address}-2", ghost, "wrong") for _ in range(4)]

    assert [r.status_code for r in real] == [r.status_code for r in fake] == [200, 200, 200, 429]

    def page(response, username: str) -> str:
        text = response.content.decode().replace(username, "")
        return re.sub(r"[A-Za-z0-9]{64}", "<csrf token>", text)

    assert page(real[-1], user.username) == page(fake[-1], ghost)
    assert page(real[0], user.username) == page(fake[0], ghost)


def test_blank_password_posts_neither_count_nor_reset(limits, address):
    user = UserFactory(username=f"ivan-{address}")
    for _ in range(3):
        form_login(address, user.username, "wrong")

    blank = form_login(address, user.username, "")

    assert blank.status_code == 429
    assert form_login(address, user.username, PASSWORD).status_code == 429


def test_lockout_ends_after_the_cooldown(limits, address, monkeypatch):
    user = UserFactory(username=f"judy-{address}")
    for _ in range(3):
        form_login(address, user.username, "wrong")
    assert form_login(address, user.username, PASSWORD).status_code == 429
    now = security.time.time()
    monkeypatch.setattr(security.time, "time", lambda: now + 601)

    assert form_login(address, user.username, PASSWORD).status_code == 302


def test_default_limits_allow_a_few_typos():
    from django.conf import settings

    assert settings.ASSAY_LOGIN_FAILURE_LIMIT >= 3
    assert settings.ASSAY_LOGIN_IP_FAILURE_LIMIT > settings.ASSAY_LOGIN_FAILURE_LIMIT
    assert settings.ASSAY_LOGIN_LOCKOUT_SECONDS >= 60


def test_production_cookies_are_secure_http_only_and_same_site():
    from tests.core.test_deployment import PRODUCTION_ENV, manage, minimal_env

    code = (
        "from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, "
        "s.SESSION_COOKIE_SAMESITE, s.CSRF_COOKIE_SAMESITE, s.SESSION_COOKIE_AGE)"
    )
    result = manage(
        "shell",
        "-c",
        code,
        "--settings=config.settings.production",
        env=minimal_env(**PRODUCTION_ENV),
    )

    assert result.returncode == 0, result.stderr
    secure, csrf_secure, http_only, same_site, csrf_same_site, age = (
        result.stdout.strip().splitlines()[-1].split()
    )
    assert (secure, csrf_secure, http_only) == ("True", "True", "True")
    assert (same_site, csrf_same_site) == ("Lax", "Lax")
    assert 3600 <= int(age) <= 7 * 24 * 3600
