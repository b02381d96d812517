"""API routes of the quality app (relative to /api/v1/)."""

from __future__ import annotations

from django.urls import path

from quality.api.views import ProjectQualityApi

urlpatterns = [
    path("projects/<int:pk>/quality/", ProjectQualityApi.as_view(), name="project-quality"),
]
