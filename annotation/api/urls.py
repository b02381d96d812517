"""API routes of the annotation app (relative to /api/v1/)."""

from __future__ import annotations

from django.urls import path

from annotation.api import views

urlpatterns = [
    path("projects/", views.ProjectListCreateApi.as_view(), name="project-list"),
    path("projects/<int:project_id>/", views.ProjectDetailApi.as_view(), name="project-detail"),
    path(
        "projects/<int:project_id>/imports/",
        views.ImportCreateApi.as_view(),
        name="import-create",
    ),
    path("imports/<int:import_job_id>/", views.ImportDetailApi.as_view(), name="import-detail"),
    path("projects/<int:project_id>/items/", views.ItemListApi.as_view(), name="item-list"),
]
