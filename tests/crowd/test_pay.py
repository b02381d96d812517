"""Pay: rewards, decisions, bonuses, the ledger, the payout CSV, fair pay, and who may do what."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import URLPattern, reverse
from django.utils import timezone

from crowd.api import pay_urls
from crowd.models import Bonus, PayDecision, PaySettings
from crowd.pay import (
    annotation_decide,
    bonus_grant,
    csv_cell_safe,
    fair_pay_get,
    gold_accuracy_get,
    ledger_get,
    money,
    pay_settings_get,
    pay_settings_update,
    payout_csv,
    worker_pseudonym,
)
from tests.annotation.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.get_current_timezone())


def answer(project, author, *, gold=None, label="positive", duration_ms=1500):
    item = ItemFactory(project=project, gold=gold)
    return AnnotationFactory(
        item=item, author=author, value={"label": label}, duration_ms=duration_ms
    )


@pytest.fixture
def paying(project):
    return pay_settings_update(
        project=project, currency="eur", reward_cents=10, gold_reward_cents=4
    )


def approve(annotation, by, **kwargs):
    return annotation_decide(annotation=annotation, status="approved", decided_by=by, **kwargs)


def reject(annotation, by, reason="Did not read the text.", **kwargs):
    return annotation_decide(
        annotation=annotation, status="rejected", reason=reason, decided_by=by, **kwargs
    )


# --- settings -----------------------------------------------------------------------------------


def test_money_formats_integer_cents():
    assert money(1234, "EUR") == "12.34 EUR"
    assert money(5, "USD") == "0.05 USD"
    assert money(None, "USD") == "—"


def test_pay_settings_get_defaults_to_unpaid_without_creating_a_row(project):
    pay = pay_settings_get(project=project)

    assert (pay.pk, pay.reward_cents, pay.currency) == (None, 0, "USD")
    assert not PaySettings.objects.exists()


def test_pay_settings_update_upserts_one_row_and_normalises_currency(project, paying):
    pay_settings_update(project=project, currency="gbp", reward_cents=25)

    pay = PaySettings.objects.get(project=project)
    assert (pay.currency, pay.reward_cents, pay.gold_reward_cents) == ("GBP", 25, None)
    assert PaySettings.objects.count() == 1


@pytest.mark.parametrize("currency", ["EU", "E1R", "ÉUR"])
def test_pay_settings_update_refuses_a_bad_currency(project, currency):
    with pytest.raises(ValidationError) as error:
        pay_settings_update(project=project, currency=currency, reward_cents=1)

    assert "currency" in error.value.message_dict


# --- decisions ----------------------------------------------------------------------------------


def test_annotation_decide_approval_freezes_the_reward_gold_apart(project, owner, worker, paying):
    regular, gold = answer(project, worker), answer(project, worker, gold={"label": "positive"})

    first, second = approve(regular, owner), approve(gold, owner)
    pay_settings_update(project=project, currency="EUR", reward_cents=99)

    assert (first.amount_cents, second.amount_cents) == (10, 4)
    assert PayDecision.objects.get(pk=first.pk).amount_cents == 10
    assert first.source == PayDecision.Source.OWNER
    assert first.worker_id == worker.pk


def test_annotation_decide_rejection_needs_a_reason(project, owner, worker, paying):
    annotation = answer(project, worker)

    with pytest.raises(ValidationError) as error:
        reject(annotation, owner, reason="   ")

    assert "reason" in error.value.message_dict
    assert not PayDecision.objects.exists()


def test_annotation_decide_a_person_must_be_named_unless_automatic(project, worker, paying):
    annotation = answer(project, worker)

    with pytest.raises(ValidationError):
        annotation_decide(annotation=annotation, status="approved", source="owner")
    automatic = annotation_decide(annotation=annotation, status="approved", source="quality")

    assert automatic.decided_by is None
    assert automatic.amount_cents == 10


def test_annotation_decide_overturn_supersedes_and_the_ledger_follows(
    project, owner, worker, paying
):
    annotation = answer(project, worker)
    first = annotation_decide(
        annotation=annotation, status="rejected", reason="Below the gold bar", source="quality"
    )
    assert ledger_get(project=project).rows[0].rejected_count == 1

    second = approve(annotation, owner)

    first.refresh_from_db()
    assert first.superseded_at is not None
    assert second.superseded_at is None
    row = ledger_get(project=project).rows[0]
    assert (row.approved_count, row.earned_cents, row.rejected_count) == (1, 10, 0)
    assert PayDecision.objects.filter(annotation=annotation).count() == 2


def test_annotation_decide_same_decision_again_changes_nothing(project, owner, worker, paying):
    annotation = answer(project, worker)
    first = approve(annotation, owner)

    again = approve(annotation, owner)

    assert again.pk == first.pk
    assert PayDecision.objects.count() == 1


def test_annotation_decide_automatic_never_overturns_a_person(project, reviewer, worker, paying):
    annotation = answer(project, worker)
    human = approve(annotation, reviewer, source="reviewer")

    result = annotation_decide(
        annotation=annotation, status="rejected", reason="auto", source="quality"
    )

    assert result.pk == human.pk
    assert result.status == "approved"
    assert PayDecision.objects.count() == 1


def test_pay_decision_one_current_per_annotation_is_a_database_rule(project, owner, worker):
    annotation = answer(project, worker)
    approve(annotation, owner)

    with pytest.raises(IntegrityError), transaction.atomic():
        PayDecision.objects.create(
            project=project, annotation=annotation, worker=worker, status="approved", source="owner"
        )


# --- bonuses ------------------------------------------------------------------------------------


def test_bonus_grant_records_amount_and_note(project, owner, worker):
    bonus = bonus_grant(
        project=project, worker=worker, amount_cents=150, note=" Great work ", granted_by=owner
    )

    assert (bonus.amount_cents, bonus.note, bonus.granted_by) == (150, "Great work", owner)


@pytest.mark.parametrize(
    ("amount", "note", "field"), [(0, "ok", "amount_cents"), (100, "  ", "note")]
)
def test_bonus_grant_refuses_bad_amount_or_missing_note(
    project, owner, worker, amount, note, field
):
    with pytest.raises(ValidationError) as error:
        bonus_grant(
            project=project, worker=worker, amount_cents=amount, note=note, granted_by=owner
        )

    assert field in error.value.message_dict
    assert not Bonus.objects.exists()


def test_bonus_grant_refuses_someone_who_does_not_work_here(project, owner, outsider):
    with pytest.raises(ValidationError) as error:
        bonus_grant(project=project, worker=outsider, amount_cents=5, note="hi", granted_by=owner)

    assert "worker" in error.value.message_dict


# --- ledger -------------------------------------------------------------------------------------


def test_ledger_get_counts_earned_pending_rejected_and_bonuses_per_worker(
    project, owner, worker, paying
):
    other = make_annotator(project, "other")
    a1, a2, _pending, _pending_gold = (
        answer(project, worker),
        answer(project, worker),
        answer(project, worker),
        answer(project, worker, gold={"label": "negative"}),
    )
    approve(a1, owner)
    reject(a2, owner)
    approve(answer(project, other), owner)
    bonus_grant(project=project, worker=worker, amount_cents=50, note="thanks", granted_by=owner)
    bonus_grant(project=project, worker=worker, amount_cents=25, note="again", granted_by=owner)

    ledger = ledger_get(project=project)

    rows = {row.username: row for row in ledger.rows}
    mine = rows["worker"]
    assert (mine.approved_count, mine.earned_cents, mine.rejected_count) == (1, 10, 1)
    assert (mine.pending_count, mine.pending_cents) == (2, 10 + 4)
    assert (mine.bonus_count, mine.bonus_cents, mine.total_cents) == (2, 75, 85)
    assert (rows["other"].earned_cents, rows["other"].total_cents) == (10, 10)
    assert ledger.total_cents == 95
    assert ledger.currency == "EUR"


def test_ledger_get_for_one_worker_has_only_their_row(project, owner, worker, paying):
    other = make_annotator(project, "other")
    approve(answer(project, other), owner)
    answer(project, worker)

    ledger = ledger_get(project=project, worker=worker)

    assert [row.worker_id for row in ledger.rows] == [worker.pk]


def test_ledger_get_period_counts_decisions_when_made(project, owner, worker, paying):
    annotation = answer(project, worker)
    with time_machine.travel(NOON, tick=False):
        approve(annotation, owner)
    with time_machine.travel(NOON + timedelta(days=40), tick=False):
        bonus_grant(project=project, worker=worker, amount_cents=7, note="x", granted_by=owner)

    march = ledger_get(
        project=project, start=NOON - timedelta(days=9), end=NOON + timedelta(days=21)
    )
    april = ledger_get(
        project=project, start=NOON + timedelta(days=21), end=NOON + timedelta(days=51)
    )

    assert (march.rows[0].earned_cents, march.rows[0].bonus_cents) == (10, 0)
    assert (april.rows[0].earned_cents, april.rows[0].bonus_cents) == (0, 7)


# --- fair pay and gold accuracy -----------------------------------------------------------------


def test_fair_pay_get_median_rate_and_floor_warning(project, worker, settings):
    settings.ASSAY_FAIR_PAY_FLOOR_CENTS_PER_HOUR = 1200
    pay_settings_update(project=project, currency="USD", reward_cents=5)
    for ms in (10_000, 20_000, 60_000, 0):  # the unmeasured answer is left out
        answer(project, worker, duration_ms=ms)

    monitor = fair_pay_get(project=project)

    assert (monitor.samples, monitor.median_seconds) == (3, 20.0)
    assert monitor.cents_per_hour == 900  # 5 cents every 20 s
    assert monitor.floor_cents_per_hour == 1200
    assert monitor.is_below_floor


def test_fair_pay_get_uses_the_projects_own_floor_and_each_workers_times(project, worker):
    pay_settings_update(
        project=project, currency="USD", reward_cents=5, fair_pay_floor_cents_per_hour=500
    )
    quick = make_annotator(project, "quick")
    answer(project, worker, duration_ms=20_000)
    answer(project, quick, duration_ms=5_000)

    mine, theirs = (
        fair_pay_get(project=project, worker=worker),
        fair_pay_get(project=project, worker=quick),
    )

    assert (mine.cents_per_hour, mine.is_below_floor) == (900, False)
    assert theirs.cents_per_hour == 3600
    assert fair_pay_get(project=project).median_seconds == 12.5


def test_fair_pay_get_without_timed_answers_has_no_rate(project):
    monitor = fair_pay_get(project=project)

    assert monitor.cents_per_hour is None
    assert not monitor.is_below_floor


def test_gold_accuracy_get_compares_labels_with_gold(project, worker):
    answer(project, worker, gold={"label": "positive"}, label="positive")
    answer(project, worker, gold={"label": "positive"}, label="negative")
    answer(project, worker, gold={"label": "negative"}, label="negative")
    answer(project, worker, label="negative")  # not gold: does not count
    later = timezone.now() + timedelta(days=1, seconds=1)

    accuracy = gold_accuracy_get(project=project, worker=worker, now=later)
    fresh = gold_accuracy_get(project=project, worker=worker)

    assert (accuracy.correct, accuracy.total, accuracy.percent) == (2, 3, 66.7)
    # answers younger than a day don't count yet: the figure can't give a single check away
    assert (fresh.correct, fresh.total) == (0, 0)


# --- payout CSV ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("x")', '\'=HYPERLINK("x")'),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("Reviews", "Reviews"),
        ("a=b", "a=b"),
    ],
)
def test_csv_cell_safe_neutralises_formulas(value, expected):
    assert csv_cell_safe(value) == expected


def rows_of(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_payout_csv_one_row_per_worker_with_pseudonym_and_amounts(project, owner, worker, paying):
    with time_machine.travel(NOON, tick=False):
        approve(answer(project, worker), owner)
        bonus_grant(project=project, worker=worker, amount_cents=30, note="=evil", granted_by=owner)
        reject(answer(project, make_annotator(project, "other")), owner)

    text = payout_csv(project=project, start=date(2026, 3, 1), end=date(2026, 3, 31))

    rows = rows_of(text)
    assert len(rows) == 2
    mine = next(
        r
        for r in rows
        if r["worker"] == worker_pseudonym(project_id=project.pk, worker_id=worker.pk)
    )
    assert (mine["earned_cents"], mine["bonus_cents"], mine["total_cents"]) == ("10", "30", "40")
    assert (mine["currency"], mine["period_from"], mine["period_to"]) == (
        "EUR",
        "2026-03-01",
        "2026-03-31",
    )
    assert all(worker.username not in row.values() for row in rows)
    assert "other" not in text
    assert worker.email not in text


def test_payout_csv_leaves_out_other_periods(project, owner, worker, paying):
    with time_machine.travel(NOON, tick=False):
        approve(answer(project, worker), owner)

    text = payout_csv(project=project, start=date(2026, 4, 1), end=date(2026, 4, 30))

    assert rows_of(text) == []


def test_payout_csv_neutralises_formula_injection_in_text_cells(owner, db):
    project = ProjectFactory(created_by=owner, name='=HYPERLINK("http://evil","x")')
    worker = make_annotator(project, "w1")
    answer(project, worker)

    text = payout_csv(project=project, start=date(2000, 1, 1), end=date(2100, 1, 1))

    row = rows_of(text)[0]
    assert row["project"] == '\'=HYPERLINK("http://evil","x")'
    assert all(not cell.startswith(("=", "+", "-", "@")) for cell in row.values())


def test_worker_pseudonym_is_stable_per_project_and_differs_across_projects(owner, db):
    user = UserFactory(username="alice")

    here = worker_pseudonym(project_id=1, worker_id=user.pk)

    assert here == worker_pseudonym(project_id=1, worker_id=user.pk)
    assert here != worker_pseudonym(project_id=2, worker_id=user.pk)
    assert "alice" not in here
    assert str(user.pk) != here


# --- API: the authorization table ---------------------------------------------------------------

ROLES = ["owner", "reviewer", "annotator", "outsider", "anonymous"]
# name -> (method, expected status per role in ROLES order)
API_TABLE = {
    "pay-settings:get": ("get", [200, 200, 200, 404, 401]),
    "pay-settings:put": ("put", [200, 403, 403, 404, 401]),
    "pay-decisions:post": ("post", [201, 201, 403, 404, 401]),
    "pay-bonuses:post": ("post", [201, 403, 403, 404, 401]),
    "pay-ledger:get": ("get", [200, 200, 200, 404, 401]),
    "pay-payout:get": ("get", [200, 403, 403, 404, 401]),
}


def test_authorization_table_covers_every_pay_endpoint():
    names = {p.name for p in pay_urls.urlpatterns if isinstance(p, URLPattern)}

    assert {key.split(":")[0] for key in API_TABLE} == names


@pytest.fixture
def actors(owner, reviewer, worker, outsider):
    return {
        "owner": owner,
        "reviewer": reviewer,
        "annotator": worker,
        "outsider": outsider,
        "anonymous": None,
    }


def payload_for(name, project, worker):
    if name == "pay-settings:put":
        return {"currency": "EUR", "reward_cents": 12}
    if name == "pay-decisions:post":
        return {"annotation": answer(project, worker).pk, "status": "approved"}
    if name == "pay-bonuses:post":
        return {"worker": worker.pk, "amount_cents": 5, "note": "thanks"}
    if name == "pay-payout:get":
        return {"from": "2026-01-01", "to": "2026-12-31"}
    return None


@pytest.mark.parametrize("role_index", range(len(ROLES)), ids=ROLES)
@pytest.mark.parametrize("key", sorted(API_TABLE))
def test_pay_api_authorization(key, role_index, project, worker, actors, client_for):
    method, expected = API_TABLE[key]
    client = client_for(actors[ROLES[role_index]])
    url = reverse(f"api:{key.split(':')[0]}", args=[project.pk])
    data = payload_for(key, project, worker)

    response = getattr(client, method)(url, data, format=None if method == "get" else "json")

    assert response.status_code == expected[role_index], response.content


# --- API: behaviour -----------------------------------------------------------------------------


def test_api_settings_put_then_get(project, owner, worker, client_for):
    url = reverse("api:pay-settings", args=[project.pk])
    client_for(owner).put(
        url,
        {"currency": "eur", "reward_cents": 6, "fair_pay_floor_cents_per_hour": 2000},
        format="json",
    )
    answer(project, worker, duration_ms=30_000)

    body = client_for(worker).get(url).json()

    assert (body["currency"], body["reward_cents"], body["effective_floor_cents_per_hour"]) == (
        "EUR",
        6,
        2000,
    )
    assert body["fair_pay"]["cents_per_hour"] == 720
    assert body["fair_pay"]["is_below_floor"] is True
    assert body["my_fair_pay"]["median_seconds"] == 30.0


def test_api_settings_put_rejects_bad_input(project, owner, client_for):
    url = reverse("api:pay-settings", args=[project.pk])

    response = client_for(owner).put(url, {"currency": "EURO", "reward_cents": -1}, format="json")

    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"currency", "reward_cents"}


def test_api_decision_reject_needs_reason_and_other_projects_answer_is_404(
    project, owner, worker, client_for
):
    url = reverse("api:pay-decisions", args=[project.pk])
    mine = answer(project, worker)
    foreign = AnnotationFactory()

    no_reason = client_for(owner).post(
        url, {"annotation": mine.pk, "status": "rejected"}, format="json"
    )
    elsewhere = client_for(owner).post(
        url, {"annotation": foreign.pk, "status": "approved"}, format="json"
    )

    assert no_reason.status_code == 400
    assert "reason" in no_reason.json()["fields"]
    assert elsewhere.status_code == 404
    assert not PayDecision.objects.exists()


def test_api_reviewer_decision_is_recorded_as_reviewer(
    project, reviewer, worker, client_for, paying
):
    annotation = answer(project, worker)

    response = client_for(reviewer).post(
        reverse("api:pay-decisions", args=[project.pk]),
        {"annotation": annotation.pk, "status": "rejected", "reason": "Spam"},
        format="json",
    )

    assert response.status_code == 201
    assert (response.json()["source"], response.json()["reason"]) == ("reviewer", "Spam")


def test_api_ledger_owner_sees_all_worker_only_self(
    project, owner, worker, client_for, paying, django_assert_max_num_queries
):
    other = make_annotator(project, "other")
    approve(answer(project, worker), owner)
    approve(answer(project, other), owner)
    url = reverse("api:pay-ledger", args=[project.pk])

    with django_assert_max_num_queries(8):
        everyone = client_for(owner).get(url).json()
    own = client_for(worker).get(url).json()

    assert {r["username"] for r in everyone["rows"]} == {"worker", "other"}
    assert [r["username"] for r in own["rows"]] == ["worker"]
    assert own["rows"][0]["earned_cents"] == 10


def test_api_payout_csv_download(project, owner, worker, client_for, paying):
    approve(answer(project, worker), owner)
    today = timezone.localdate()

    response = client_for(owner).get(
        reverse("api:pay-payout", args=[project.pk]),
        {"from": today.isoformat(), "to": today.isoformat()},
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    assert rows_of(response.content.decode())[0]["earned_cents"] == "10"


def test_api_payout_needs_a_valid_period(project, owner, client_for):
    url = reverse("api:pay-payout", args=[project.pk])

    missing = client_for(owner).get(url)
    backwards = client_for(owner).get(url, {"from": "2026-02-01", "to": "2026-01-01"})

    assert missing.status_code == 400
    assert {"from", "to"} <= set(missing.json()["fields"])
    assert backwards.status_code == 400


def test_api_bonus_for_unknown_user_is_404_and_for_outsider_400(
    project, owner, outsider, client_for
):
    url = reverse("api:pay-bonuses", args=[project.pk])

    unknown = client_for(owner).post(
        url, {"worker": 999_999, "amount_cents": 5, "note": "x"}, format="json"
    )
    stranger = client_for(owner).post(
        url, {"worker": outsider.pk, "amount_cents": 5, "note": "x"}, format="json"
    )

    assert unknown.status_code == 404
    assert stranger.status_code == 400
    assert "worker" in stranger.json()["fields"]


# --- HTML pages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "expected"), [("owner", 200), ("reviewer", 200), ("annotator", 403), ("outsider", 404)]
)
def test_pay_page_access(client, project, actors, who, expected):
    client.force_login(actors[who])

    assert client.get(reverse("pay:overview", args=[project.pk])).status_code == expected


def test_pay_page_warns_below_floor_and_lists_work(
    client, project, owner, worker, settings, django_assert_max_num_queries
):
    settings.ASSAY_FAIR_PAY_FLOOR_CENTS_PER_HOUR = 1200
    pay_settings_update(project=project, currency="USD", reward_cents=1)
    for _ in range(3):
        answer(project, worker, duration_ms=10_000)
    client.force_login(owner)

    with django_assert_max_num_queries(15):
        page = client.get(reverse("pay:overview", args=[project.pk])).content.decode()

    assert "Below the floor" in page
    assert "3.60 USD" in page
    assert page.count('id="answer-') == 3
    assert 'id="pay-ledger"' in page
    assert "worker" in page


def test_pay_page_for_reviewer_hides_worker_names_and_owner_sections(
    client, project, reviewer, worker
):
    answer(project, worker)
    client.force_login(reviewer)

    page = client.get(reverse("pay:overview", args=[project.pk])).content.decode()

    assert 'id="answer-' in page
    assert ">worker<" not in page
    assert 'id="pay-ledger"' not in page
    assert 'id="pay-settings"' not in page


def test_pay_decide_view_rejects_with_reason_and_worker_reads_it(
    client, project, owner, worker, paying
):
    annotation = answer(project, worker)
    client.force_login(owner)

    response = client.post(
        reverse("pay:decide", args=[project.pk]),
        {"annotation": annotation.pk, "status": "rejected", "reason": "Label contradicts the text"},
        headers={"HX-Request": "true"},
    )
    client.force_login(worker)
    page = client.get(reverse("pay:earnings", args=[project.pk])).content.decode()

    assert response.status_code == 200
    assert response["HX-Redirect"].endswith(f"/projects/{project.pk}/pay/")
    assert "Rejected" in page
    assert "Label contradicts the text" in page


def test_pay_decide_view_without_reason_is_422(client, project, owner, worker):
    annotation = answer(project, worker)
    client.force_login(owner)

    response = client.post(
        reverse("pay:decide", args=[project.pk]),
        {"annotation": annotation.pk, "status": "rejected", "reason": ""},
        headers={"HX-Request": "true"},
    )

    assert response.status_code == 422
    assert "the worker reads the reason" in response.content.decode()
    assert not PayDecision.objects.exists()


def test_pay_settings_view_saves_and_invalid_is_422(client, project, owner):
    client.force_login(owner)
    url = reverse("pay:settings", args=[project.pk])

    bad = client.post(url, {"currency": "E1R", "reward_cents": "5"}, headers={"HX-Request": "true"})
    good = client.post(url, {"currency": "chf", "reward_cents": "7"})

    assert bad.status_code == 422
    assert "three-letter" in bad.content.decode()
    assert good.status_code == 302
    assert PaySettings.objects.get(project=project).currency == "CHF"


def test_pay_bonus_view_grants(client, project, owner, worker):
    client.force_login(owner)

    response = client.post(
        reverse("pay:bonus", args=[project.pk]),
        {"username": "worker", "amount_cents": "40", "note": "Nice"},
    )

    assert response.status_code == 302
    assert Bonus.objects.get().amount_cents == 40


def test_pay_payout_view_downloads_csv_for_owners_only(
    client, project, owner, reviewer, worker, paying
):
    approve(answer(project, worker), owner)
    today = timezone.localdate().isoformat()
    url = reverse("pay:payout", args=[project.pk])

    client.force_login(owner)
    owned = client.get(url, {"from": today, "to": today})
    client.force_login(reviewer)
    reviewed = client.get(url, {"from": today, "to": today})

    assert owned.status_code == 200
    assert rows_of(owned.content.decode())[0]["total_cents"] == "10"
    assert reviewed.status_code == 403


def test_pay_earnings_page_shows_own_money_rate_gold_and_bonus(
    client, project, owner, worker, paying
):
    approve(answer(project, worker, gold={"label": "positive"}, duration_ms=4_000), owner)
    answer(project, worker, duration_ms=4_000)
    other = make_annotator(project, "other")
    approve(answer(project, other), owner)
    bonus_grant(
        project=project, worker=worker, amount_cents=20, note="Fast and careful", granted_by=owner
    )
    client.force_login(worker)

    today = client.get(reverse("pay:earnings", args=[project.pk])).content.decode()
    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1)):
        page = client.get(reverse("pay:earnings", args=[project.pk])).content.decode()

    assert "No check questions answered more than a day ago yet." in today
    assert "0.04 EUR" in page  # earned: one gold approval
    assert "0.24 EUR" in page  # total with the bonus
    assert "Fast and careful" in page
    assert "100.0%" in page
    assert "90.00 EUR" in page  # 10 cents every 4 s
    assert "Pending" in page
    assert "other" not in page


def test_pay_earnings_page_is_404_for_outsiders(client, project, outsider):
    client.force_login(outsider)

    assert client.get(reverse("pay:earnings", args=[project.pk])).status_code == 404


def test_project_tabs_link_pay_for_owner_and_earnings_for_worker(client, project, owner, worker):
    client.force_login(owner)
    owner_page = client.get(reverse("pay:overview", args=[project.pk])).content.decode()
    client.force_login(worker)
    worker_page = client.get(reverse("pay:earnings", args=[project.pk])).content.decode()

    pay_link = f'href="{reverse("pay:overview", args=[project.pk])}"'
    assert pay_link in owner_page
    assert pay_link not in worker_page
    assert reverse("pay:earnings", args=[project.pk]) in worker_page


# --- fair-pay notice on the project overview ----------------------------------------------------


@pytest.fixture
def underpaid(project, worker, settings):
    """1 cent every 10 s = 3.60 USD an hour, under a 12.00 USD floor."""
    settings.ASSAY_FAIR_PAY_FLOOR_CENTS_PER_HOUR = 1200
    pay_settings_update(project=project, currency="USD", reward_cents=1)
    for _ in range(3):
        answer(project, worker, duration_ms=10_000)


def test_fair_pay_notice_warns_the_owner_on_the_overview_below_the_floor(
    client, project, owner, underpaid
):
    client.force_login(owner)

    page = client.get(reverse("annotation:project-detail", args=[project.pk])).content.decode()

    assert 'id="fair-pay-notice"' in page
    assert "10.0 s" in page  # median seconds per answer
    assert "3.60 USD" in page  # effective hourly rate
    assert "12.00 USD" in page  # the floor
    assert f'href="{reverse("pay:overview", args=[project.pk])}"' in page


def test_fair_pay_notice_only_on_the_overview_and_only_for_owners(
    client, project, owner, reviewer, worker, underpaid
):
    overview = reverse("annotation:project-detail", args=[project.pk])
    client.force_login(reviewer)
    reviewer_page = client.get(overview).content.decode()
    client.force_login(worker)
    worker_page = client.get(overview).content.decode()
    client.force_login(owner)
    settings_page = client.get(
        reverse("annotation:project-settings", args=[project.pk])
    ).content.decode()

    assert 'id="fair-pay-notice"' not in reviewer_page
    assert 'id="fair-pay-notice"' not in worker_page
    assert 'id="fair-pay-notice"' not in settings_page


@pytest.mark.parametrize("reward_cents", [4, 5])  # 14.40 and 18.00 an hour: above the floor
def test_fair_pay_notice_hidden_at_or_above_the_floor(
    client, project, owner, worker, settings, reward_cents
):
    settings.ASSAY_FAIR_PAY_FLOOR_CENTS_PER_HOUR = 1440
    pay_settings_update(project=project, currency="USD", reward_cents=reward_cents)
    answer(project, worker, duration_ms=10_000)
    client.force_login(owner)

    page = client.get(reverse("annotation:project-detail", args=[project.pk])).content.decode()

    assert page.count("<h1>") == 1  # the page rendered
    assert 'id="fair-pay-notice"' not in page


def test_fair_pay_notice_hidden_when_the_rate_is_unknown(client, project, owner, settings):
    settings.ASSAY_FAIR_PAY_FLOOR_CENTS_PER_HOUR = 1200
    pay_settings_update(project=project, currency="USD", reward_cents=1)
    client.force_login(owner)

    page = client.get(reverse("annotation:project-detail", args=[project.pk])).content.decode()

    assert 'id="fair-pay-notice"' not in page


def test_fair_pay_get_is_one_aggregate_query_on_many_answers(
    project, worker, django_assert_num_queries
):
    pay_settings_update(project=project, currency="USD", reward_cents=5)
    item = ItemFactory(project=project)
    Annotation = AnnotationFactory._meta.model
    Annotation.objects.bulk_create(
        Annotation(project=project, item=item, author=worker, value={"label": "x"}, duration_ms=ms)
        for ms in range(1_000, 3_001)
    )

    with django_assert_num_queries(2):  # the settings, then count + median in one aggregate
        monitor = fair_pay_get(project=project)

    assert (monitor.samples, monitor.median_seconds) == (2001, 2.0)


# --- payout CSV: identities only on the owner's explicit request --------------------------------


@pytest.fixture
def identified(project, owner, paying):
    """Two paid workers; one came through a Prolific study, with an id that looks like a
    formula, and has a username that does too."""
    from crowd.models import ExternalIdentity, ExternalStudy
    from tests.crowd.factories import make_pool

    plain = make_annotator(project, "plain")
    plain.email = "plain@example.org"
    plain.save()
    crafty = make_annotator(project, "@SUM")
    crafty.email = "crafty@example.org"
    crafty.save()
    study = ExternalStudy.objects.create(
        project=project,
        pool=make_pool(project),
        platform=ExternalStudy.Platform.PROLIFIC,
        slug="s1",
        completion_code="C0DE",
    )
    ExternalIdentity.objects.create(study=study, external_id="=5f3aPID", user=crafty)
    other_project = ProjectFactory(created_by=owner, name="Elsewhere")
    elsewhere = ExternalStudy.objects.create(
        project=other_project,
        pool=make_pool(other_project, name="Other pool"),
        platform=ExternalStudy.Platform.MTURK,
        slug="s2",
        completion_code="C0DE",
    )
    ExternalIdentity.objects.create(study=elsewhere, external_id="A1OTHER", user=crafty)
    with time_machine.travel(NOON, tick=False):
        approve(answer(project, plain), owner)
        approve(answer(project, crafty), owner)
    return plain, crafty


def test_payout_csv_default_has_no_identities(project, identified):
    text = payout_csv(project=project, start=date(2026, 3, 1), end=date(2026, 3, 31))

    rows = rows_of(text)
    assert len(rows) == 2
    assert not {"username", "email", "external_ids"} & set(rows[0])
    for needle in ("plain", "SUM", "example.org", "5f3aPID"):
        assert needle not in text


def test_payout_csv_with_identities_adds_them_guarded_and_only_this_projects_ids(
    project, identified, django_assert_num_queries
):
    plain, crafty = identified

    with django_assert_num_queries(5):  # settings, ledger (2), users, external ids
        text = payout_csv(
            project=project, start=date(2026, 3, 1), end=date(2026, 3, 31), identities=True
        )

    rows = {row["worker"]: row for row in rows_of(text)}
    mine = rows[worker_pseudonym(project_id=project.pk, worker_id=plain.pk)]
    theirs = rows[worker_pseudonym(project_id=project.pk, worker_id=crafty.pk)]
    assert (mine["username"], mine["email"], mine["external_ids"]) == (
        "plain",
        "plain@example.org",
        "",
    )
    assert (theirs["username"], theirs["email"], theirs["external_ids"]) == (
        "'@SUM",  # neutralised against formulas
        "crafty@example.org",
        "prolific:=5f3aPID",
    )
    assert theirs["total_cents"] == "10"
    assert "A1OTHER" not in text  # another project's study


def test_api_payout_identities_on_request_only_and_still_owners_only(
    project, owner, reviewer, outsider, identified, client_for
):
    url = reverse("api:pay-payout", args=[project.pk])
    period = {"from": "2026-03-01", "to": "2026-03-31"}

    default = client_for(owner).get(url, period)
    asked = client_for(owner).get(url, {**period, "identities": "1"})
    refused = client_for(owner).get(url, {**period, "identities": "0"})
    bad = client_for(owner).get(url, {**period, "identities": "maybe"})

    assert "email" not in rows_of(default.content.decode())[0]
    assert "identities" not in default["Content-Disposition"]
    assert {row["email"] for row in rows_of(asked.content.decode())} == {
        "plain@example.org",
        "crafty@example.org",
    }
    assert "-identities.csv" in asked["Content-Disposition"]
    assert "email" not in rows_of(refused.content.decode())[0]
    assert bad.status_code == 400
    assert "identities" in bad.json()["fields"]
    assert client_for(reviewer).get(url, {**period, "identities": "1"}).status_code == 403
    assert client_for(outsider).get(url, {**period, "identities": "1"}).status_code == 404


def test_pay_payout_view_identities_checkbox(
    client, project, owner, reviewer, outsider, identified
):
    url = reverse("pay:payout", args=[project.pk])
    period = {"from": "2026-03-01", "to": "2026-03-31"}
    client.force_login(owner)

    page = client.get(reverse("pay:overview", args=[project.pk])).content.decode()
    default = client.get(url, period).content.decode()
    asked = client.get(url, {**period, "identities": "1"}).content.decode()

    assert 'name="identities" type="checkbox" value="1"' in page
    assert "Personal data:" in page
    assert "checked" not in page.split('id="payout-identities"')[1].split(">")[0]
    assert "crafty@example.org" not in default
    assert "crafty@example.org" in asked
    assert "prolific:=5f3aPID" in asked
    client.force_login(reviewer)
    assert client.get(url, {**period, "identities": "1"}).status_code == 403
    client.force_login(outsider)
    assert client.get(url, {**period, "identities": "1"}).status_code == 404
