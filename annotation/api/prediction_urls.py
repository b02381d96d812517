"""API routes of a project's predictions (relative to /api/v1/)."""

from __future__ import annotations

from django.urls import path

from annotation.api import prediction_views

urlpatterns = [
    path(
        "projects/<int:project_id>/predictions/",
        prediction_views.PredictionListCreateApi.as_view(),
        name="prediction-list",
    ),
]
