"""API routes for the built-in model (relative to /api/v1/)."""

from __future__ import annotations

from django.urls import path

from quality.api import model_views as views

urlpatterns = [
    path(
        "projects/<int:project_id>/model/versions/",
        views.ModelVersionListApi.as_view(),
        name="model-version-list",
    ),
    path(
        "projects/<int:project_id>/model/train/",
        views.ModelTrainApi.as_view(),
        name="model-train",
    ),
]
