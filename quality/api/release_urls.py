"""API routes for dataset releases (relative to /api/v1/)."""

from __future__ import annotations

from django.urls import path

from quality.api import release_diff_views, release_webhook_views
from quality.api import release_views as views

urlpatterns = [
    path(
        "projects/<int:project_id>/releases/",
        views.ReleaseListApi.as_view(),
        name="release-list",
    ),
    path(
        "projects/<int:project_id>/releases/diff/",
        release_diff_views.ReleaseDiffApi.as_view(),
        name="release-diff",
    ),
    path(
        "projects/<int:project_id>/releases/webhook/",
        release_webhook_views.ReleaseWebhookApi.as_view(),
        name="release-webhook",
    ),
    path("releases/<int:release_id>/", views.ReleaseDetailApi.as_view(), name="release-detail"),
    path(
        "releases/<int:release_id>/download/",
        views.ReleaseDownloadApi.as_view(),
        name="release-download",
    ),
]
