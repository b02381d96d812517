"""The owner's payout export: one CSV row per worker for a period, under pseudonymous ids."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta

from django.utils import timezone
from django.utils.crypto import salted_hmac

from annotation.models import Project
from crowd.pay.selectors import ledger_get

PSEUDONYM_SALT = "crowd.pay.worker_pseudonym"
# Spreadsheets run a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HEADER = [
    "project",
    "worker",
    "currency",
    "period_from",
    "period_to",
    "approved",
    "earned_cents",
    "bonus_cents",
    "total_cents",
    "pending",
    "pending_cents",
    "rejected",
]


def worker_pseudonym(*, project_id: int, worker_id: int) -> str:
    """A worker's id in exports: stable per project, different across projects, not reversible
    (keyed with SECRET_KEY), and never the username or email."""
    digest = salted_hmac(PSEUDONYM_SALT, f"{project_id}\x00{worker_id}", algorithm="sha256")
    return f"w-{digest.hexdigest()[:16]}"


def csv_cell_safe(value: object) -> str:
    """A text cell a spreadsheet will not run: a leading ' before = + - @ (and tab, CR)."""
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def payout_period(start: date, end: date) -> tuple[datetime, datetime]:
    """The inclusive dates as [start of `start`, start of the day after `end`) in local time."""
    zone = timezone.get_current_timezone()
    return (
        datetime.combine(start, time.min, tzinfo=zone),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone),
    )


def payout_csv(*, project: Project, start: date, end: date) -> str:
    """The payout CSV for the dates from `start` to `end` inclusive: workers with any money,
    pending or rejected work in the period; every text cell neutralised against formulas."""
    since, until = payout_period(start, end)
    ledger = ledger_get(project=project, start=since, end=until)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for row in ledger.rows:
        if not (row.approved_count or row.bonus_count or row.pending_count or row.rejected_count):
            continue
        text = [
            project.name,
            worker_pseudonym(project_id=project.pk, worker_id=row.worker_id),
            ledger.currency,
            start.isoformat(),
            end.isoformat(),
        ]
        numbers = [
            row.approved_count,
            row.earned_cents,
            row.bonus_cents,
            row.total_cents,
            row.pending_count,
            row.pending_cents,
            row.rejected_count,
        ]
        writer.writerow([csv_cell_safe(cell) for cell in text] + numbers)
    return out.getvalue()
