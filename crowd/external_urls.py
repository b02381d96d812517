"""HTML pages for external workers (entry link, completion code, qualification test) and the
owners' pages that set them up."""

from __future__ import annotations

from django.urls import path

from crowd import external_views

app_name = "external"
urlpatterns = [
    path("s/<str:slug>/", external_views.study_entry, name="study-entry"),
    path("s/<str:slug>/done/", external_views.study_done, name="study-done"),
    path("projects/<int:pk>/studies/", external_views.study_list_page, name="study-list"),
    path(
        "projects/<int:pk>/qualification/",
        external_views.qualification_test,
        name="qualification-test",
    ),
    path(
        "projects/<int:pk>/qualification/retake/",
        external_views.qualification_retake,
        name="qualification-retake",
    ),
    path(
        "projects/<int:pk>/qualification/settings/",
        external_views.qualification_settings,
        name="qualification-settings",
    ),
]
