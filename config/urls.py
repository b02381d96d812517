"""Top-level URLs: HTML pages per app, the API under /api/v1/, auth and admin."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="annotation:project-list"), name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="registration/login.html"),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("core.ops_urls")),
    path("api/v1/", include(("config.api_urls", "api"), namespace="api")),
    path("", include("annotation.urls")),
    path("", include("annotation.schema_urls")),
    path("", include("crowd.urls")),
    path("", include("crowd.external_urls")),
    path("", include("crowd.pay_urls")),
    path("", include("crowd.pool_urls")),
    path("", include("quality.urls")),
    path("", include("quality.release_urls")),
    path("", include("quality.model_urls")),
    path("", include("quality.label_import_urls")),
    path("", include("quality.rules_urls")),
    path("", include("core.audit_urls")),
]

# Pages answer a lost database with a clean 503 (core.errors); other errors keep 500.html.
handler500 = "core.errors.server_error"
