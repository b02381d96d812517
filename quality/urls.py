"""HTML pages of the quality app: the owner dashboard."""

from __future__ import annotations

from django.urls import path  # noqa: F401

app_name = "quality"
urlpatterns: list = []
