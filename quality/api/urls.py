"""API routes of the quality app (relative to /api/v1/)."""

from __future__ import annotations

from django.urls import path

from quality.api.config_views import (
    GoldPromoteApi,
    QualityActionListCreateApi,
    QualityActionUndoApi,
    QualityConfigApi,
)
from quality.api.review_views import ReviewDecisionCreateApi, ReviewItemApi, ReviewQueueApi
from quality.api.views import ProjectQualityApi

urlpatterns = [
    path("projects/<int:pk>/quality/", ProjectQualityApi.as_view(), name="project-quality"),
    path(
        "projects/<int:pk>/quality/config/",
        QualityConfigApi.as_view(),
        name="project-quality-config",
    ),
    path(
        "projects/<int:pk>/quality/actions/",
        QualityActionListCreateApi.as_view(),
        name="project-quality-actions",
    ),
    path(
        "projects/<int:pk>/quality/actions/<int:action_id>/undo/",
        QualityActionUndoApi.as_view(),
        name="project-quality-action-undo",
    ),
    path(
        "projects/<int:pk>/quality/gold/promote/",
        GoldPromoteApi.as_view(),
        name="project-quality-gold-promote",
    ),
    path(
        "projects/<int:project_id>/review/queue/",
        ReviewQueueApi.as_view(),
        name="review-queue",
    ),
    path(
        "projects/<int:project_id>/review/items/<int:item_id>/",
        ReviewItemApi.as_view(),
        name="review-item",
    ),
    path(
        "projects/<int:project_id>/review/items/<int:item_id>/decision/",
        ReviewDecisionCreateApi.as_view(),
        name="review-decision",
    ),
]
