"""Security headers on every response, and lockout of repeated failed sign-ins.

Headers: a Content-Security-Policy without inline scripts (pages load only our own static JS),
a Permissions-Policy that turns off camera, microphone and geolocation, and a
Cross-Origin-Opener-Policy. The API docs page (Swagger UI) starts itself with an inline script,
so its path alone gets a policy that allows one.

Lockout: a failed sign-in on the login form, the admin login or the token endpoint counts against
the (username, address) pair and against the address. After ASSAY_LOGIN_FAILURE_LIMIT failures
for one pair, or ASSAY_LOGIN_IP_FAILURE_LIMIT for one address, further attempts from there are
refused for ASSAY_LOGIN_LOCKOUT_SECONDS with 429 and the time left, whether the username exists or
not (no enumeration). A successful sign-in clears the pair's count. Counters live in the default
cache (Redis in production), so every web process shares them.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from rest_framework.throttling import BaseThrottle

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: https:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "object-src 'none'",
    ]
)
# Swagger UI (drf-spectacular-sidecar) runs its start-up script inline.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "object-src 'none'",
    ]
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=()"
CROSS_ORIGIN_OPENER_POLICY = "same-origin"

LOCKED_OUT_CODE = "locked_out"
_FAILED_FLAG = "_assay_login_failed"


def _docs_path() -> str:
    return reverse("api:docs")


class SecurityHeadersMiddleware:
    """Add the CSP, Permissions-Policy and Cross-Origin-Opener-Policy headers to every response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = (
            DOCS_CONTENT_SECURITY_POLICY
            if request.path == _docs_path()
            else CONTENT_SECURITY_POLICY
        )
        response.headers.setdefault("Content-Security-Policy", policy)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        # XFrameOptionsMiddleware never sees what WhiteNoise answers (static files).
        response.headers.setdefault("X-Frame-Options", "DENY")
        # Swagger UI asks for "unsafe-none" (for OAuth2 pop-ups, which Assay does not use).
        response.headers["Cross-Origin-Opener-Policy"] = CROSS_ORIGIN_OPENER_POLICY
        return response


# --- Login lockout -------------------------------------------------------------------------------


def client_address(request: HttpRequest) -> str:
    """The address a sign-in attempt came from, as the API throttles see it.

    REMOTE_ADDR, or with REST_FRAMEWORK["NUM_PROXIES"] set, the address that many trusted
    proxies back in X-Forwarded-For.
    """
    return BaseThrottle().get_ident(request) or "unknown"  # type: ignore[arg-type]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _pair_key(username: str, address: str) -> str:
    return f"lockout:pair:{_digest(username.strip().lower() + chr(0) + address)}"


def _address_key(address: str) -> str:
    return f"lockout:addr:{_digest(address)}"


def _cooldown() -> int:
    return int(settings.ASSAY_LOGIN_LOCKOUT_SECONDS)


def _record(key: str, limit: int) -> None:
    """Count one failure under `key`; at `limit` failures, lock the key for the cooldown."""
    cooldown = _cooldown()
    cache.add(f"{key}:n", 0, cooldown)
    try:
        count = cache.incr(f"{key}:n")
    except ValueError:  # expired between add and incr
        cache.set(f"{key}:n", 1, cooldown)
        count = 1
    if count >= limit:
        cache.set(f"{key}:until", time.time() + cooldown, cooldown)


def _seconds_left(key: str) -> float:
    until = cache.get(f"{key}:until")
    return max(0.0, until - time.time()) if until else 0.0


def login_failure_record(*, username: str, address: str) -> None:
    """Count a failed sign-in for `username` from `address`."""
    _record(_pair_key(username, address), int(settings.ASSAY_LOGIN_FAILURE_LIMIT))
    _record(_address_key(address), int(settings.ASSAY_LOGIN_IP_FAILURE_LIMIT))


def login_success_record(*, username: str, address: str) -> None:
    """Clear the failure count of `username` from `address` after a successful sign-in."""
    key = _pair_key(username, address)
    cache.delete_many([f"{key}:n", f"{key}:until"])


def lockout_seconds_left(*, username: str, address: str) -> float:
    """Seconds until `username` may try again from `address` (0: not locked out)."""
    return max(_seconds_left(_pair_key(username, address)), _seconds_left(_address_key(address)))


def lockout_message(seconds: float) -> str:
    """The message shown to a locked-out client, with the time left in whole minutes."""
    minutes = max(1, math.ceil(seconds / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return (
        "Too many failed sign-in attempts. "
        f"Sign-in from this address is blocked; try again in {minutes} {unit}."
    )


def _http_request(request: Any) -> HttpRequest | None:
    """The Django request behind a DRF request (signals may carry either)."""
    return getattr(request, "_request", request) if request is not None else None


@receiver(user_login_failed, dispatch_uid="core.security.login_failed")
def _on_login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **_: Any
) -> None:
    http_request = _http_request(request)
    if http_request is not None:
        setattr(http_request, _FAILED_FLAG, True)


@receiver(user_logged_in, dispatch_uid="core.security.logged_in")
def _on_logged_in(sender: Any, request: Any, user: Any, **_: Any) -> None:
    http_request = _http_request(request)
    if http_request is not None:
        login_success_record(username=user.get_username(), address=client_address(http_request))


class LoginLockoutMiddleware:
    """Refuse sign-in attempts from locked-out clients; count the failures of the others.

    Guards POSTs to the login form, the admin login and the token endpoint. Failures are those
    for which Django's `authenticate` sent `user_login_failed`; form posts that never reach it
    (a blank field) neither count nor clear.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def _guarded(self, request: HttpRequest) -> str | None:
        """'api' or 'form' for a guarded sign-in POST, else None."""
        if request.method != "POST":
            return None
        if request.path == reverse("api:auth-token"):
            return "api"
        if request.path in (reverse("login"), reverse("admin:login")):
            return "form"
        return None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        kind = self._guarded(request)
        if kind is None:
            return self.get_response(request)
        username = _posted_username(request)
        address = client_address(request)
        left = lockout_seconds_left(username=username, address=address)
        if left > 0:
            return _locked_response(request, kind, left)
        response = self.get_response(request)
        if getattr(request, _FAILED_FLAG, False):
            login_failure_record(username=username, address=address)
        elif kind == "api" and response.status_code == 200:
            login_success_record(username=username, address=address)
        return response


def _posted_username(request: HttpRequest) -> str:
    if request.content_type == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return ""
        value = body.get("username") if isinstance(body, dict) else None
        return value if isinstance(value, str) else ""
    return request.POST.get("username", "")


def _locked_response(request: HttpRequest, kind: str, seconds: float) -> HttpResponse:
    message = lockout_message(seconds)
    if kind == "api":
        response: HttpResponse = JsonResponse(
            {"detail": message, "code": LOCKED_OUT_CODE, "fields": {}}, status=429
        )
    else:
        response = render(request, "core/locked_out.html", {"message": message}, status=429)
    response["Retry-After"] = str(math.ceil(seconds))
    return response
