"""HTML pages of the crowd app."""

from __future__ import annotations

from django.urls import path

from crowd import image_views, suggestion_views, views

app_name = "crowd"
urlpatterns = [
    path("projects/<int:pk>/label/", views.label_page, name="label"),
    path(
        "projects/<int:pk>/label/<int:assignment_id>/submit/",
        views.label_submit,
        name="label-submit",
    ),
    path(
        "projects/<int:pk>/label/<int:assignment_id>/skip/",
        views.label_skip,
        name="label-skip",
    ),
    path("projects/<int:pk>/items/<int:item_id>/image/", image_views.item_image, name="item-image"),
    path("projects/<int:pk>/members/", views.project_members, name="members"),
    path(
        "projects/<int:pk>/suggestions/",
        suggestion_views.suggestion_settings,
        name="suggestions",
    ),
    path(
        "projects/<int:pk>/members/<int:user_id>/remove/",
        views.member_remove,
        name="member-remove",
    ),
    path("projects/<int:pk>/members/blocks/", views.member_block, name="member-block"),
    path(
        "projects/<int:pk>/members/blocks/<int:block_id>/lift/",
        views.member_unblock,
        name="member-unblock",
    ),
]
