"""HTML routes of the audit log."""

from __future__ import annotations

from django.urls import path

from core import audit_views

app_name = "audit"

urlpatterns = [
    path("projects/<int:pk>/audit/", audit_views.audit_page, name="audit-list"),
]
