"""Rate limits for the crowd endpoints: a fixed window counted with one Redis round trip."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

logger = logging.getLogger(__name__)


@functools.cache
def _redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _count_hit(key: str, ttl: int) -> int:
    """Add one hit to `key` (created with `ttl` seconds to live) and return the new count."""
    if settings.REDIS_URL:
        pipeline = _redis_client(settings.REDIS_URL).pipeline(transaction=False)
        pipeline.incr(key)
        pipeline.expire(key, ttl, nx=True)
        count, _ = pipeline.execute()
        return int(count)
    cache.add(key, 0, ttl)
    return cache.incr(key)


class FixedWindowThrottle(BaseThrottle):
    """Per user (or address) and scope: at most N requests per window.

    DRF's own throttles keep every request's timestamp in one cached list, pickled in and out
    on each call; at a worker's pace that list grows to the whole limit. A counter does not.
    The scope's rate comes from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] (None: no limit).
    """

    scope = "crowd"

    def __init__(self) -> None:
        self.retry_after: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        scope = getattr(view, "throttle_scope", self.scope)
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope)
        if rate is None:
            return True
        limit, window = SimpleRateThrottle.parse_rate(self, rate)  # type: ignore[arg-type]
        user = request.user
        ident = f"u{user.pk}" if user and user.is_authenticated else self.get_ident(request)
        now = time.time()
        key = f"throttle:{scope}:{ident}:{int(now // window)}"
        try:
            count = _count_hit(key, window + 1)
        except redis.RedisError:
            # Labeling must not stop because the limiter's store is down: fail open, loudly.
            logger.warning("Rate limiter unavailable; %s request allowed unthrottled", scope)
            return True
        if count <= limit:
            return True
        self.retry_after = window - now % window
        return False

    def wait(self) -> float | None:
        return self.retry_after
