"""HTML pages of pools: the owner's pools, invites, and a project's pools and requirements."""

from __future__ import annotations

from django.urls import path

from crowd import pool_views

app_name = "pools"
urlpatterns = [
    path("pools/", pool_views.pool_list, name="list"),
    path("pools/<int:pool_id>/", pool_views.pool_detail, name="detail"),
    path("pools/<int:pool_id>/members/", pool_views.pool_member_add_view, name="member-add"),
    path(
        "pools/<int:pool_id>/members/<int:user_id>/remove/",
        pool_views.pool_member_remove_view,
        name="member-remove",
    ),
    path("pools/<int:pool_id>/blocks/", pool_views.pool_block_view, name="block"),
    path(
        "pools/<int:pool_id>/blocks/<int:block_id>/lift/",
        pool_views.pool_unblock_view,
        name="unblock",
    ),
    path("pools/<int:pool_id>/invites/", pool_views.pool_invite_create_view, name="invite-create"),
    path(
        "pools/<int:pool_id>/invites/<int:invite_id>/revoke/",
        pool_views.pool_invite_revoke_view,
        name="invite-revoke",
    ),
    path("pools/join/<str:token>/", pool_views.pool_join, name="join"),
    path("projects/<int:pk>/pools/", pool_views.project_pools, name="project"),
    path("projects/<int:pk>/pools/link/", pool_views.project_pool_link_view, name="project-link"),
    path(
        "projects/<int:pk>/pools/<int:pool_id>/unlink/",
        pool_views.project_pool_unlink_view,
        name="project-unlink",
    ),
    path(
        "projects/<int:pk>/requirements/",
        pool_views.project_requirement_add_view,
        name="requirement-add",
    ),
    path(
        "projects/<int:pk>/requirements/<int:requirement_id>/remove/",
        pool_views.project_requirement_remove_view,
        name="requirement-remove",
    ),
]
