"""HTML pages of a project's label schema: its versions and changing the label set."""

from __future__ import annotations

app_name = "schema"
urlpatterns: list = []
