from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core.api.authentication import CachedTokenAuthentication

pytestmark = pytest.mark.django_db


@pytest.fixture
def token_client(worker):
    token = Token.objects.create(user=worker)
    return APIClient(HTTP_AUTHORIZATION=f"Token {token.key}"), token


def test_cached_token_skips_the_lookup_within_its_lifetime(
    token_client, settings, django_assert_num_queries
):
    settings.ASSAY_TOKEN_CACHE_SECONDS = 60
    CachedTokenAuthentication._seen.clear()
    auth = CachedTokenAuthentication()
    _client, token = token_client
    auth.authenticate_credentials(token.key)

    with django_assert_num_queries(0):
        user, _ = auth.authenticate_credentials(token.key)

    assert user.username == "worker"


def test_deleted_token_is_refused_once_the_cache_is_off(token_client, settings):
    settings.ASSAY_TOKEN_CACHE_SECONDS = 0
    client, token = token_client
    assert client.get("/api/v1/projects/").status_code == 200

    token.delete()

    assert client.get("/api/v1/projects/").status_code == 401
