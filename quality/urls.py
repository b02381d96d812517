"""HTML pages of the quality app: the owner dashboard."""

from __future__ import annotations

from django.urls import path

from quality import config_views, review_views, views

app_name = "quality"
urlpatterns = [
    path("projects/<int:pk>/quality/", views.dashboard, name="dashboard"),
    path("projects/<int:pk>/quality/settings/", config_views.quality_settings, name="settings"),
    path("projects/<int:pk>/quality/actions/", config_views.quality_actions, name="actions"),
    path(
        "projects/<int:pk>/quality/actions/<int:action_id>/undo/",
        config_views.quality_action_undo_view,
        name="action-undo",
    ),
    path(
        "projects/<int:pk>/quality/gold/promote/",
        config_views.gold_promote_view,
        name="gold-promote",
    ),
    path("projects/<int:pk>/review/", review_views.review_next, name="review"),
    path(
        "projects/<int:pk>/review/items/<int:item_id>/",
        review_views.review_item,
        name="review-item",
    ),
    path(
        "projects/<int:pk>/review/items/<int:item_id>/decide/",
        review_views.review_item_decide,
        name="review-decide",
    ),
]
