"""API routes for labeling rules (relative to /api/v1/)."""

from __future__ import annotations

from django.urls import path

from quality.api import rules_views as views

urlpatterns = [
    path("projects/<int:project_id>/rules/", views.RuleListApi.as_view(), name="rule-list"),
    path("projects/<int:project_id>/rules/run/", views.RuleRunApi.as_view(), name="rule-run"),
    path(
        "projects/<int:project_id>/rules/<int:rule_id>/",
        views.RuleDetailApi.as_view(),
        name="rule-detail",
    ),
]
