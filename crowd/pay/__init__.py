"""Pay: rewards, approvals and rejections, bonuses, the ledger, payout export, fair pay.

Services and selectors live in their sub-modules and are re-exported here, so callers (views,
the API, and later the quality engine) write `from crowd.pay import annotation_decide`.
"""

from __future__ import annotations

from crowd.pay.export import (
    csv_cell_safe,
    payout_csv,
    payout_export,
    payout_filename,
    payout_identities,
    payout_period,
    worker_pseudonym,
)
from crowd.pay.selectors import (
    FairPay,
    GoldAccuracy,
    Ledger,
    LedgerRow,
    annotation_get_for_decision,
    annotation_list_for_worker,
    annotation_list_undecided,
    bonus_list,
    fair_pay_get,
    gold_accuracy_get,
    ledger_get,
    money,
    pay_decision_list_recent,
    pay_floor_cents,
    pay_settings_get,
    reward_cents_for,
)
from crowd.pay.services import annotation_decide, bonus_grant, pay_settings_update

__all__ = [
    "FairPay",
    "GoldAccuracy",
    "Ledger",
    "LedgerRow",
    "annotation_decide",
    "annotation_get_for_decision",
    "annotation_list_for_worker",
    "annotation_list_undecided",
    "bonus_grant",
    "bonus_list",
    "csv_cell_safe",
    "fair_pay_get",
    "gold_accuracy_get",
    "ledger_get",
    "money",
    "pay_decision_list_recent",
    "pay_floor_cents",
    "pay_settings_get",
    "pay_settings_update",
    "payout_csv",
    "payout_export",
    "payout_filename",
    "payout_identities",
    "payout_period",
    "reward_cents_for",
    "worker_pseudonym",
]
