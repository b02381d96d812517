"""API routes of external studies and qualification tests (relative to /api/v1/)."""

from __future__ import annotations

from django.urls import path

from crowd.api import external_views

urlpatterns = [
    path(
        "projects/<int:project_id>/studies/",
        external_views.ProjectStudyListApi.as_view(),
        name="project-studies",
    ),
    path(
        "projects/<int:project_id>/qualification/",
        external_views.ProjectQualificationApi.as_view(),
        name="project-qualification",
    ),
    path(
        "projects/<int:project_id>/qualification/attempts/",
        external_views.ProjectQualificationAttemptListApi.as_view(),
        name="project-qualification-attempts",
    ),
]
