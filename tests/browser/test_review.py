"""A reviewer decides doubtful items with the keyboard only; the owner's dashboard draws charts."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from annotation.services import project_member_set
from quality import review as review_module
from quality.models import ItemScore, ProjectScore, ReviewDecision, WorkerScore
from tests.annotation.factories import AnnotationFactory, ItemFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LABELS = [
    {"value": "positive", "hotkey": "1"},
    {"value": "negative", "hotkey": "2"},
    {"value": "mixed", "hotkey": "3"},
]
TEXTS = [
    "Great sound for the price, but the ear cushions get warm after an hour.",
    "Lovely colour and very comfortable, though it runs a size small.",
    "Decent blender. Crushes ice fine, struggles a little with frozen fruit.",
]


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server"
        time.sleep(0.05)


def _doubtful_project():
    owner = UserFactory(username="olivia")
    project = ProjectFactory(created_by=owner, name="Product reviews — sentiment", labels=LABELS)
    crowd = [UserFactory(username=f"crowd-{n}") for n in range(3)]
    items = []
    for n, text in enumerate(TEXTS):
        item = ItemFactory(project=project, data={"text": text})
        answers = ["positive", "negative", "positive"] if n != 1 else ["mixed", "negative", "mixed"]
        for worker, answer in zip(crowd, answers, strict=True):
            AnnotationFactory(item=item, author=worker, value={"label": answer})
        top = answers[0]
        ItemScore.objects.create(
            item=item,
            project=project,
            majority_label=top,
            agreement=2 / 3,
            annotation_count=3,
            label=top,
            confidence=0.5 + n / 10,  # queue order: items in creation order
            posterior={
                top: 0.5 + n / 10,
                "negative": 0.5 - n / 10,
                "mixed" if top != "mixed" else "positive": 0.0,
            },
            method="ds",
            state="review",
            computed_at=timezone.now(),
        )
        items.append(item)
    for n, worker in enumerate(crowd):
        WorkerScore.objects.create(
            project=project, worker=worker, reliability=0.6 + n / 10, computed_at=timezone.now()
        )
    return project, items


def test_reviewer_accepts_then_picks_with_the_keyboard(page, live_server, log_in, artifacts_dir):
    project, items = _doubtful_project()
    reviewer = UserFactory(username="rita")
    project_member_set(project=project, user=reviewer, role="reviewer")
    review_path = f"/projects/{project.pk}/review/"

    with mock.patch.object(review_module, "quality_recompute_schedule"):
        log_in("rita", next_url=review_path)
        stage_item = page.locator("#review-stage .review-item")
        expect(stage_item).to_have_attribute("id", f"review-item-{items[0].pk}")
        expect(page.locator(".review-answer-who")).to_have_text(
            ["Worker A", "Worker B", "Worker C"]
        )
        assert "crowd-0" not in page.content()
        page.screenshot(path=str(artifacts_dir / "review.png"), full_page=True)
        box = page.locator(".review-controls").bounding_box()

        page.keyboard.press("Enter")  # accept the consensus (positive)
        expect(stage_item).to_have_attribute("id", f"review-item-{items[1].pk}")
        expect(page.locator("[data-notice]")).to_contain_text("Saved “positive”")
        expect(page.locator(f"#review-item-{items[1].pk}")).to_be_focused()
        moved = page.locator(".review-controls").bounding_box()
        assert abs(moved["y"] - box["y"]) < 2  # no layout jump between items

        page.keyboard.press("2")  # pick Worker B's "negative" over the consensus "mixed"
        expect(stage_item).to_have_attribute("id", f"review-item-{items[2].pk}")
        expect(page.locator(f"#review-item-{items[2].pk}")).to_be_focused()  # swap settled

        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")  # Worker B's answer: negative
        expect(page.locator("[data-answer]").nth(1)).to_be_focused()
        page.keyboard.press("Enter")
        expect(
            page.get_by_text("Nothing waits for review in this project right now.")
        ).to_be_visible()
        page.screenshot(path=str(artifacts_dir / "review-empty.png"))

    _wait_for(lambda: ReviewDecision.objects.count() == 3)
    decisions = {
        d.item_id: (d.action, d.value["label"], d.reviewer_id) for d in ReviewDecision.objects.all()
    }
    assert decisions == {
        items[0].pk: ("accepted", "positive", reviewer.pk),
        items[1].pk: ("picked", "negative", reviewer.pk),
        items[2].pk: ("picked", "negative", reviewer.pk),
    }
    states = set(ItemScore.objects.filter(project=project).values_list("state", "confidence"))
    assert states == {("reviewed", 1.0)}


def test_owner_dashboard_draws_its_charts(page, live_server, log_in, artifacts_dir):
    project, _items = _doubtful_project()
    ProjectScore.objects.create(
        project=project,
        fleiss_kappa=0.41,
        krippendorff_alpha=0.42,
        items_scored=3,
        annotations_scored=9,
        computed_at=timezone.now(),
        details={
            "method": "ds",
            "method_requested": "auto",
            "method_reason": "Dawid-Skene fits best on held-out votes.",
            "agreement": {
                "fleiss": {"value": 0.41, "low": 0.3, "high": 0.52},
                "alpha_nominal": {"value": 0.42, "low": 0.31, "high": 0.53},
            },
            "over_time": [
                {
                    "start": f"2025-03-{d:02d}T00:00:00+00:00",
                    "fleiss": {"value": 0.3 + d / 50, "low": 0.2 + d / 50, "high": 0.4 + d / 50},
                    "alpha": {"value": 0.32 + d / 50, "low": 0.22 + d / 50, "high": 0.42 + d / 50},
                }
                for d in range(1, 13)
            ],
            "gold_trend": [
                {
                    "start": f"2025-03-{d:02d}T00:00:00+00:00",
                    "n": 20,
                    "accuracy": 0.7 + d / 60,
                    "low": 0.55 + d / 60,
                    "high": 0.8 + d / 70,
                }
                for d in range(1, 13)
            ],
            "confusion": {
                "labels": ["positive", "negative", "mixed"],
                "matrix": [[40, 3, 7], [2, 35, 5], [9, 6, 12]],
            },
            "label_distribution": [
                {"label": "positive", "count": 50, "share": 0.5, "expected_share": 0.45},
                {"label": "negative", "count": 35, "share": 0.35, "expected_share": 0.35},
                {"label": "mixed", "count": 15, "share": 0.15, "expected_share": 0.2},
            ],
        },
    )

    log_in("olivia", next_url=f"/projects/{project.pk}/quality/")

    for chart in (
        "chart-gold-trend",
        "chart-agreement-trend",
        "chart-label-balance",
        "chart-confusion",
    ):
        expect(page.locator(f"#{chart} svg[role=img]")).to_be_visible()
    assert page.locator("#chart-confusion svg[role=img]").bounding_box()["width"] > 200
    page.screenshot(path=str(artifacts_dir / "quality-dashboard.png"), full_page=True)
