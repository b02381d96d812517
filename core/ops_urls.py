"""Operations URLs at the site root: /healthz, /readyz, /metrics."""

from __future__ import annotations

from django.urls import path

from core import ops_views

app_name = "ops"

urlpatterns = [
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
]
