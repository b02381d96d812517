"""HTML pages of pay."""

from __future__ import annotations

from django.urls import path

from crowd import pay_views

app_name = "pay"
urlpatterns = [
    path("projects/<int:pk>/pay/", pay_views.pay_overview, name="overview"),
    path("projects/<int:pk>/pay/settings/", pay_views.pay_settings_save, name="settings"),
    path("projects/<int:pk>/pay/decide/", pay_views.pay_decide, name="decide"),
    path("projects/<int:pk>/pay/bonuses/", pay_views.pay_bonus, name="bonus"),
    path("projects/<int:pk>/pay/payout.csv", pay_views.pay_payout, name="payout"),
    path("projects/<int:pk>/pay/me/", pay_views.pay_earnings, name="earnings"),
]
