"""API routes of the crowd app (relative to /api/v1/)."""

from __future__ import annotations

from django.urls import path

from crowd.api import views

urlpatterns = [
    path("projects/<int:project_id>/next/", views.ProjectNextApi.as_view(), name="project-next"),
    path(
        "assignments/<int:assignment_id>/submit/",
        views.AssignmentSubmitApi.as_view(),
        name="assignment-submit",
    ),
    path(
        "assignments/<int:assignment_id>/skip/",
        views.AssignmentSkipApi.as_view(),
        name="assignment-skip",
    ),
    path(
        "projects/<int:project_id>/members/",
        views.ProjectMemberListApi.as_view(),
        name="project-members",
    ),
    path(
        "projects/<int:project_id>/members/<int:user_id>/",
        views.ProjectMemberRemoveApi.as_view(),
        name="project-member-remove",
    ),
    path(
        "projects/<int:project_id>/blocks/",
        views.ProjectBlockListApi.as_view(),
        name="project-blocks",
    ),
    path(
        "projects/<int:project_id>/blocks/<int:block_id>/lift/",
        views.ProjectBlockLiftApi.as_view(),
        name="project-block-lift",
    ),
]
