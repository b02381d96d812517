"""API of a project's label schema versions."""

from __future__ import annotations

from django.urls import path

from annotation.api import schema_views

urlpatterns = [
    path(
        "projects/<int:project_id>/schema/versions/",
        schema_views.SchemaVersionListCreateApi.as_view(),
        name="schema-version-list",
    ),
    path(
        "projects/<int:project_id>/schema/plan/",
        schema_views.SchemaPlanApi.as_view(),
        name="schema-plan",
    ),
]
