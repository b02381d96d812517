"""HTML pages for labeling rules."""

from __future__ import annotations

from django.urls import path

from quality import rules_views as views

app_name = "rules"
urlpatterns = [
    path("projects/<int:pk>/rules/", views.rule_list, name="rule-list"),
    path("projects/<int:pk>/rules/run/", views.rule_run, name="rule-run"),
    path("projects/<int:pk>/rules/<int:rule_pk>/", views.rule_edit, name="rule-edit"),
    path("projects/<int:pk>/rules/<int:rule_pk>/active/", views.rule_active, name="rule-active"),
    path("projects/<int:pk>/rules/<int:rule_pk>/delete/", views.rule_remove, name="rule-delete"),
]
