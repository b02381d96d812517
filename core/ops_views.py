"""Operations endpoints: liveness, readiness and Prometheus metrics (no login needed).

/healthz answers without touching any service. /readyz runs the readiness checks and answers
503 when one fails. /metrics answers 404 unless the request comes straight from an address in
ASSAY_METRICS_ALLOWED_IPS (not through a proxy) or carries `Authorization: Bearer
<ASSAY_METRICS_TOKEN>`.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.health import readiness_check
from core.metrics import registry_for_scrape

# Headers a reverse proxy adds: a request carrying one did not come from the allowed address
# itself, even when REMOTE_ADDR is the proxy's loopback address.
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches no database, broker or storage."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: database, broker and storage each answer; 503 naming the failed ones."""
    readiness = readiness_check()
    return JsonResponse(readiness.as_dict(), status=200 if readiness.ok else 503)


def _address_allowed(request: HttpRequest) -> bool:
    if any(request.META.get(header) for header in PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    for entry in settings.ASSAY_METRICS_ALLOWED_IPS:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _token_allowed(request: HttpRequest) -> bool:
    token = settings.ASSAY_METRICS_TOKEN
    if not token:
        return False
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def metrics_allowed(request: HttpRequest) -> bool:
    """Whether `request` may read /metrics: an allowed direct address or the bearer token."""
    return _token_allowed(request) or _address_allowed(request)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition of this process (or of all, in multiprocess mode)."""
    if not metrics_allowed(request):
        raise Http404
    return HttpResponse(generate_latest(registry_for_scrape()), content_type=CONTENT_TYPE_LATEST)
