"""API of a project's label schema versions."""

from __future__ import annotations

urlpatterns: list = []
