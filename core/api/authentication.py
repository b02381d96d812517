"""Token authentication with a short per-process memory of recent tokens."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from django.conf import settings
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, remembering each token's user for a few seconds.

    The crowd endpoints are called several times a second per worker; looking the token up
    on every call was a fifth of a labeling request's cost. The price: a deleted token or a
    deactivated user keeps working for at most ASSAY_TOKEN_CACHE_SECONDS in each process.
    """

    _lock = threading.Lock()
    _seen: dict[str, tuple[float, Any]] = {}
    max_entries = 10_000

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        ttl = settings.ASSAY_TOKEN_CACHE_SECONDS
        now = time.monotonic()
        cached = self._seen.get(key)
        if ttl > 0 and cached is not None and now - cached[0] < ttl:
            user, token = cached[1]
            return copy.copy(user), token
        user, token = super().authenticate_credentials(key)
        if ttl > 0:
            with self._lock:
                if len(self._seen) >= self.max_entries:
                    self._seen.clear()
                self._seen[key] = (now, (copy.copy(user), token))
        return user, token
