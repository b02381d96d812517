"""The owner's payout export: one CSV row per worker for a period, under pseudonymous ids."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from django.utils.crypto import salted_hmac

from annotation.models import Project
from core.audit import audit_record
from crowd.models import ExternalIdentity
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
# Only when the owner asks for them explicitly (identities=True): who the pseudonym is.
IDENTITY_HEADER = ["username", "email", "external_ids"]


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


def payout_filename(*, project: Project, start: date, end: date, identities: bool) -> str:
    """The download's file name; one that names people says so."""
    kind = "-identities" if identities else ""
    return f"payout-project{project.pk}-{start.isoformat()}-{end.isoformat()}{kind}.csv"


def payout_identities(*, project: Project, worker_ids: list[int]) -> dict[int, list[str]]:
    """Per worker: [username, email, external ids] where the external ids are the worker's ids
    on this project's external studies as "platform:id", sorted and joined by "; ". Two
    queries."""
    users = (
        get_user_model().objects.filter(pk__in=worker_ids).values_list("pk", "username", "email")
    )
    external: dict[int, list[str]] = {}
    found = (
        ExternalIdentity.objects.filter(study__project_id=project.pk, user_id__in=worker_ids)
        .order_by("user_id", "study__platform", "external_id")
        .values_list("user_id", "study__platform", "external_id")
        .distinct()
    )
    for user_id, platform, external_id in found:
        external.setdefault(user_id, []).append(f"{platform}:{external_id}")
    return {pk: [username, email, "; ".join(external.get(pk, []))] for pk, username, email in users}


def payout_csv(*, project: Project, start: date, end: date, identities: bool = False) -> str:
    """The payout CSV for the dates from `start` to `end` inclusive: workers with any money,
    pending or rejected work in the period; every text cell neutralised against formulas.
    Workers appear under pseudonyms only, unless `identities` (the owner's explicit request)
    adds their username, email and external platform ids (IDENTITY_HEADER)."""
    since, until = payout_period(start, end)
    ledger = ledger_get(project=project, start=since, end=until)
    rows = [
        row
        for row in ledger.rows
        if row.approved_count or row.bonus_count or row.pending_count or row.rejected_count
    ]
    who: dict[int, list[str]] = {}  # stays empty (no identity columns) unless asked for
    if identities:
        who = payout_identities(project=project, worker_ids=[row.worker_id for row in rows])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER + (IDENTITY_HEADER if identities else []))
    for row in rows:
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
        extra = who.get(row.worker_id, ["", "", ""]) if identities else []
        writer.writerow(
            [csv_cell_safe(cell) for cell in text] + numbers + [csv_cell_safe(c) for c in extra]
        )
    return out.getvalue()


def payout_export(
    *,
    project: Project,
    start: date,
    end: date,
    actor: AbstractBaseUser | None,
    identities: bool = False,
) -> str:
    """An owner's payout export: `payout_csv`, recorded as an "export.payout_csv" audit event
    by `actor` (the period, whether identities were included, how many workers)."""
    text = payout_csv(project=project, start=start, end=end, identities=identities)
    audit_record(
        actor=actor,
        project=project,
        action="export.payout_csv",
        target=f"payouts {start.isoformat()} to {end.isoformat()}",
        details={"identities": identities, "workers": len(list(csv.reader(io.StringIO(text)))) - 1},
    )
    return text
