"""API routes of pay (relative to /api/v1/)."""

from __future__ import annotations

from django.urls import path

from crowd.api import pay_views

urlpatterns = [
    path(
        "projects/<int:project_id>/pay/",
        pay_views.PaySettingsApi.as_view(),
        name="pay-settings",
    ),
    path(
        "projects/<int:project_id>/pay/decisions/",
        pay_views.PayDecisionCreateApi.as_view(),
        name="pay-decisions",
    ),
    path(
        "projects/<int:project_id>/pay/bonuses/",
        pay_views.BonusCreateApi.as_view(),
        name="pay-bonuses",
    ),
    path(
        "projects/<int:project_id>/pay/ledger/",
        pay_views.LedgerApi.as_view(),
        name="pay-ledger",
    ),
    path(
        "projects/<int:project_id>/pay/payout.csv",
        pay_views.PayoutExportApi.as_view(),
        name="pay-payout",
    ),
]
