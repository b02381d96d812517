"""HTML pages for dataset releases."""

from __future__ import annotations

from django.urls import path

from quality import release_diff_views, release_webhook_views
from quality import release_views as views

app_name = "releases"
urlpatterns = [
    path("projects/<int:pk>/releases/", views.release_list, name="release-list"),
    path(
        "projects/<int:pk>/releases/diff/",
        release_diff_views.release_diff_view,
        name="release-diff",
    ),
    path(
        "projects/<int:pk>/releases/webhook/",
        release_webhook_views.release_webhook_page,
        name="release-webhook",
    ),
    path("releases/<int:pk>/", views.release_detail, name="release-detail"),
    path("releases/<int:pk>/retry/", views.release_retry_view, name="release-retry"),
    path(
        "releases/<int:pk>/download/<str:fmt>/",
        views.release_download,
        name="release-download",
    ),
]
