"""API routes of the audit log (relative to /api/v1/)."""

from __future__ import annotations

from django.urls import path

from core.api.audit_views import AuditEventListApi

urlpatterns = [
    path("projects/<int:project_id>/audit/", AuditEventListApi.as_view(), name="audit-event-list"),
]
