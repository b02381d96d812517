"""Release webhooks: a project's owners register a URL and a secret; when a release becomes
ready, a Celery task POSTs a signed JSON event there and records every attempt.

The body is compact JSON with sorted keys:
    {"event": "release.ready", "project": <id>, "release": {"id", "version", "tag",
     "manifest_sha256", "files": [{"format", "name", "sha256", "size", "url"}], "url"}}
Headers: `X-Assay-Event: release.ready` and
`X-Assay-Signature: sha256=<hex HMAC-SHA256 of the raw body with the webhook's secret>`.
URLs in the body are API URLs under ASSAY_PUBLIC_URL (downloads need the receiver's token).

Delivery: timeout 5 s, redirects are not followed, any 2xx is success. Anything else is retried
by Celery after 10 s, 1 min, 5 min, 30 min and 2 h (at most 6 attempts). Each attempt is a
WebhookDelivery row. Once an attempt has succeeded for a (release, event), later runs do
nothing: the task locks the release row while it checks and sends, so two copies of the task
never both deliver.

SSRF: unless ASSAY_WEBHOOK_ALLOW_PRIVATE is on (local development and tests only), a URL whose
host resolves to a private, loopback, link-local, multicast or reserved address is refused
when it is saved and again before each attempt. (A host whose DNS answer changes between the
check and the connection can still slip through; in production, route egress through a proxy
that enforces the same rule.)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode, urlsplit

from celery import shared_task
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.urls import reverse

from annotation.models import Project
from config.celery_app import Queue
from core.exceptions import ApplicationError
from quality.models import Release, ReleaseWebhook, WebhookDelivery
from quality.releases.selectors import release_may_manage

EVENT_READY = "release.ready"
TIMEOUT_SECONDS = 5
# Seconds to wait before attempts 2, 3, ... (so at most len + 1 attempts).
RETRY_DELAYS = (10, 60, 300, 1800, 7200)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
SECRET_MIN_LENGTH = 16
USER_AGENT = "Assay-Webhook/1"


class WebhookUrlError(ApplicationError):
    """The webhook URL is malformed or points somewhere we must not call."""

    code = "invalid_webhook_url"


def webhook_signature(*, secret: str, body: bytes) -> str:
    """The X-Assay-Signature header value of a body: 'sha256=<hex HMAC-SHA256>'."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def webhook_url_check(url: str) -> None:
    """Refuse a URL that is not http(s) with a host, or (unless ASSAY_WEBHOOK_ALLOW_PRIVATE)
    whose host resolves to a non-public address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookUrlError(
            "The webhook URL must be an http or https URL with a host.",
            fields={"url": ["Use an http:// or https:// URL with a host name."]},
        )
    if parts.username or parts.password:
        raise WebhookUrlError(
            "The webhook URL must not carry a user name or password.",
            fields={"url": ["Remove the credentials; the secret signs every request."]},
        )
    if settings.ASSAY_WEBHOOK_ALLOW_PRIVATE:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, ValueError, UnicodeError):
        raise WebhookUrlError(
            f"The webhook host {parts.hostname!r} does not resolve.",
            fields={"url": [f"{parts.hostname} does not resolve."]},
        ) from None
    refused = sorted({info[4][0] for info in infos if not _address_allowed(info[4][0])})
    if refused:
        raise WebhookUrlError(
            f"The webhook host {parts.hostname!r} resolves to a private or reserved address "
            f"({', '.join(refused)}); only public addresses may receive webhooks.",
            fields={"url": ["Use a host with a public address."]},
        )


# --- owners' settings ---------------------------------------------------------------------------


def release_webhook_get(*, project: Project) -> ReleaseWebhook | None:
    """The project's webhook, if one is set."""
    return ReleaseWebhook.objects.filter(project=project).first()


def webhook_delivery_list(*, project: Project, limit: int = 20) -> QuerySet[WebhookDelivery]:
    """The project's latest delivery attempts, newest first, with their releases."""
    return (
        WebhookDelivery.objects.filter(webhook__project=project)
        .select_related("release")
        .order_by("-id")[:limit]
    )


@transaction.atomic
def release_webhook_set(
    *,
    project: Project,
    user: AbstractBaseUser,
    url: str,
    secret: str = "",
    active: bool = True,
) -> ReleaseWebhook:
    """Create or change the project's webhook (owners only). A blank secret keeps the current
    one; a new webhook needs a secret of at least SECRET_MIN_LENGTH characters."""
    if not release_may_manage(user=user, project=project):
        raise PermissionDenied("Only the project's owners can set the release webhook.")
    url, secret = url.strip(), secret.strip()
    webhook = ReleaseWebhook.objects.select_for_update().filter(project=project).first()
    if len(url) > 500:
        raise WebhookUrlError("The webhook URL is too long.", fields={"url": ["At most 500."]})
    webhook_url_check(url)
    if secret and not SECRET_MIN_LENGTH <= len(secret) <= 200:
        message = f"The secret must have {SECRET_MIN_LENGTH} to 200 characters."
        raise ApplicationError(message, code="invalid_secret", fields={"secret": [message]})
    if not secret and webhook is None:
        message = "A new webhook needs a secret to sign its requests."
        raise ApplicationError(message, code="invalid_secret", fields={"secret": [message]})
    if webhook is None:
        webhook = ReleaseWebhook(project=project)
    webhook.url = url
    webhook.secret = secret or webhook.secret
    webhook.active = active
    webhook.save()
    return webhook


def release_webhook_delete(*, project: Project, user: AbstractBaseUser) -> None:
    """Remove the project's webhook and its delivery log (owners only)."""
    if not release_may_manage(user=user, project=project):
        raise PermissionDenied("Only the project's owners can remove the release webhook.")
    ReleaseWebhook.objects.filter(project=project).delete()


# --- the event ----------------------------------------------------------------------------------


def _absolute(path: str) -> str:
    return settings.ASSAY_PUBLIC_URL.rstrip("/") + path


def release_event_body(*, release: Release, event: str = EVENT_READY) -> bytes:
    """The JSON body announcing a ready release (compact, sorted keys: what is signed)."""
    records = sorted(release.files.all(), key=lambda record: record.format)
    manifest = next((r for r in records if r.format == "manifest"), None)
    download = reverse("api:release-download", args=[release.pk])
    files = [
        {
            "format": record.format,
            "name": record.path.rsplit("/", 1)[-1],
            "sha256": record.sha256,
            "size": record.size,
            "url": _absolute(f"{download}?{urlencode({'format': record.format})}"),
        }
        for record in records
        if record.format != "manifest"
    ]
    payload: dict[str, Any] = {
        "event": event,
        "project": release.project_id,
        "release": {
            "id": release.pk,
            "version": release.version,
            "tag": release.tag,
            "manifest_sha256": manifest.sha256 if manifest else None,
            "files": files,
            "url": _absolute(reverse("api:release-detail", args=[release.pk])),
        },
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is answered as an HTTPError: not delivered


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """POST and return (status code or None, error text; empty on 2xx)."""
    # Only http(s): webhook_url_check ran just before.
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(exc).__name__}: {reason}"[:1000]


def release_webhook_deliver(*, release_id: int, event: str = EVENT_READY) -> WebhookDelivery | None:
    """Make one delivery attempt of a release event and record it; None when there is
    nothing to do (no active webhook, release not ready or gone, already delivered)."""
    with transaction.atomic():
        release = (
            Release.objects.select_for_update()
            .select_related("project")
            .filter(pk=release_id, status=Release.Status.READY)
            .first()
        )
        webhook = ReleaseWebhook.objects.filter(project_id=getattr(release, "project_id", None))
        webhook = webhook.filter(active=True).first()
        if release is None or webhook is None:
            return None
        done = WebhookDelivery.objects.filter(release=release, event=event)
        if done.filter(delivered=True).exists():
            return None
        delivery = WebhookDelivery(
            webhook=webhook, release=release, event=event, attempt=done.count() + 1
        )
        try:
            webhook_url_check(webhook.url)
        except WebhookUrlError as exc:
            delivery.error = exc.message
        else:
            body = release_event_body(release=release, event=event)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-Assay-Event": event,
                "X-Assay-Signature": webhook_signature(secret=webhook.secret, body=body),
            }
            delivery.status_code, delivery.error = _post(webhook.url, body, headers)
            delivery.delivered = not delivery.error and 200 <= (delivery.status_code or 0) < 300
        delivery.save()
        return delivery


def retry_countdown(retries: int) -> int:
    """Seconds before the next attempt after `retries` retries (10 s, 1 min, 5 min, ...)."""
    return RETRY_DELAYS[min(retries, len(RETRY_DELAYS) - 1)]


@shared_task(bind=True, queue=Queue.DEFAULT, max_retries=MAX_ATTEMPTS - 1)
def release_webhook_task(self: Any, release_id: int, event: str = EVENT_READY) -> None:
    """Deliver a release event; retried with back-off until a 2xx or MAX_ATTEMPTS."""
    delivery = release_webhook_deliver(release_id=release_id, event=event)
    if delivery is not None and not delivery.delivered and self.request.retries < MAX_ATTEMPTS - 1:
        raise self.retry(countdown=retry_countdown(self.request.retries))


def release_ready_announce(release_id: int) -> None:
    """Enqueue the 'release.ready' webhook after the current transaction commits (when the
    project has an active webhook)."""
    if ReleaseWebhook.objects.filter(project__releases=release_id, active=True).exists():
        release_webhook_task.delay_on_commit(release_id)
