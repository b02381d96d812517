"""HTML page for importing labels collected elsewhere into a project."""

from __future__ import annotations

from django.urls import path

from quality import label_import_views as views

app_name = "label_import"
urlpatterns = [
    path("projects/<int:pk>/label-imports/", views.label_import, name="label-import"),
]
