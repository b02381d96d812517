"""HTML pages of the built-in model."""

from __future__ import annotations

from django.urls import path

from quality import model_views as views

app_name = "model"
urlpatterns = [
    path("projects/<int:pk>/model/", views.model_page, name="page"),
    path("projects/<int:pk>/model/train/", views.model_train_view, name="train"),
    path("projects/<int:pk>/model/serving-order/", views.serving_order_view, name="serving-order"),
]
