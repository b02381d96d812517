"""The REST API, mounted at /api/v1/. Paths named in the issues are relative to it."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.api.views import AuthTokenApi, UserCreateApi

urlpatterns = [
    path("auth/token/", AuthTokenApi.as_view(), name="auth-token"),
    path("users/", UserCreateApi.as_view(), name="user-create"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("", include("annotation.api.urls")),
    path("", include("annotation.api.schema_urls")),
    path("", include("annotation.api.prediction_urls")),
    path("", include("crowd.api.urls")),
    path("", include("crowd.api.external_urls")),
    path("", include("crowd.api.pay_urls")),
    path("", include("crowd.api.pool_urls")),
    path("", include("quality.api.urls")),
    path("", include("quality.api.release_urls")),
    path("", include("quality.api.model_urls")),
    path("", include("quality.api.label_import")),
    path("", include("quality.api.rules_urls")),
    path("", include("core.api.audit_urls")),
]
