"""HTML pages of a project's label schema: its versions and changing the label set."""

from __future__ import annotations

from django.urls import path

from annotation import schema_views

app_name = "schema"
urlpatterns = [
    path("projects/<int:pk>/labels/", schema_views.schema_page, name="schema-page"),
    path("projects/<int:pk>/labels/preview/", schema_views.schema_preview, name="schema-preview"),
    path("projects/<int:pk>/labels/apply/", schema_views.schema_apply, name="schema-apply"),
]
