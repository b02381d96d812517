"""API routes of pools, invites and project requirements (relative to /api/v1/)."""

from __future__ import annotations

from django.urls import path

from crowd.api import pool_views

urlpatterns = [
    path("pools/", pool_views.PoolListApi.as_view(), name="pool-list"),
    path(
        "pools/<int:pool_id>/members/",
        pool_views.PoolMemberListApi.as_view(),
        name="pool-members",
    ),
    path(
        "pools/<int:pool_id>/members/<int:user_id>/",
        pool_views.PoolMemberRemoveApi.as_view(),
        name="pool-member-remove",
    ),
    path(
        "pools/<int:pool_id>/invites/",
        pool_views.PoolInviteCreateApi.as_view(),
        name="pool-invites",
    ),
    path(
        "pools/<int:pool_id>/invites/<int:invite_id>/revoke/",
        pool_views.PoolInviteRevokeApi.as_view(),
        name="pool-invite-revoke",
    ),
    path("pools/join/<str:token>/", pool_views.PoolJoinApi.as_view(), name="pool-join"),
    path(
        "projects/<int:project_id>/pools/",
        pool_views.ProjectPoolListApi.as_view(),
        name="project-pools",
    ),
    path(
        "projects/<int:project_id>/pools/<int:pool_id>/",
        pool_views.ProjectPoolUnlinkApi.as_view(),
        name="project-pool-unlink",
    ),
    path(
        "projects/<int:project_id>/requirements/",
        pool_views.ProjectRequirementListApi.as_view(),
        name="project-requirements",
    ),
    path(
        "projects/<int:project_id>/requirements/<int:requirement_id>/",
        pool_views.ProjectRequirementRemoveApi.as_view(),
        name="project-requirement-remove",
    ),
]
