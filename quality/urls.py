"""HTML pages of the quality app: the owner dashboard."""

from __future__ import annotations

from django.urls import path

from quality import views

app_name = "quality"
urlpatterns = [
    path("projects/<int:pk>/quality/", views.dashboard, name="dashboard"),
]
