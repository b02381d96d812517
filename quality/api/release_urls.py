"""API routes for dataset releases (relative to /api/v1/)."""

from __future__ import annotations

from django.urls import path  # noqa: F401

urlpatterns: list = []
