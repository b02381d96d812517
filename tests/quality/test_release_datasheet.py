"""The release datasheet: its sections, its numbers on a constructed project, determinism."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from annotation.models import Annotation
from crowd.models import Pool, ProjectPool, Qualification
from quality.models import Release, WorkerScore
from quality.releases import release_build
from quality.releases.datasheet import DATASHEET_FILE, datasheet_render, datasheet_write
from tests.annotation.factories import AnnotationFactory, ItemFactory, UserFactory
from tests.quality.factories import make_release

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]

START = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def built(project, owner):
    """12 regular items (9 positive, 3 negative, unanimous) and 2 gold items, 3 workers.

    Workers' gold accuracy: ann-0 2/2, ann-1 1/2, ann-2 0/2. Answers span 2026-03-01 09:30 to
    2026-03-03 09:30. One answer of schema version 1 was superseded before the release.
    """
    project.instructions = "Pick the **sentiment**.\n\nIgnore sarcasm."
    project.gold_ratio = 0.15
    project.save()
    authors = [UserFactory(username=f"ann-{n}") for n in range(3)]
    answers = []
    for n in range(12):
        item = ItemFactory(project=project)
        label = "positive" if n < 9 else "negative"
        for author in authors:
            answers.append(AnnotationFactory(item=item, author=author, value={"label": label}))
    for _ in range(2):
        gold = ItemFactory(project=project, gold={"label": "positive"})
        for author, given in zip(authors, ["positive", "positive", "negative"], strict=True):
            answers.append(AnnotationFactory(item=gold, author=author, value={"label": given}))
    # the middle gold item: ann-1 wrong there, so 1/2
    Annotation.objects.filter(item=gold, author=authors[1]).update(value={"label": "negative"})
    for n, answer in enumerate(sorted(answers, key=lambda a: a.pk)):
        stamp = START + dt.timedelta(hours=48) * n / (len(answers) - 1)
        Annotation.objects.filter(pk=answer.pk).update(created_at=stamp)
    Annotation.objects.filter(pk=answers[0].pk).update(
        schema_version=1, superseded_at=START + dt.timedelta(days=1)
    )
    pool = Pool.objects.create(name="Vetted crowd", kind=Pool.Kind.EXTERNAL_CROWD, created_by=owner)
    ProjectPool.objects.create(project=project, pool=pool)
    Qualification.objects.create(project=project, pass_mark=0.75)
    release = make_release(project, owner, name="Spring")
    Release.objects.filter(pk=release.pk).update(
        purpose="Train a review classifier.",
        licence="CC BY 4.0",
        intended_use="Research only.",
    )
    release.refresh_from_db()
    return release_build(release=release)


def _workdir(release: Release, tmp_path: Path) -> tuple[dict, Path]:
    """The release's manifest minus its files, and a directory holding its data.jsonl."""
    workdir = tmp_path / f"build-{release.pk}"
    workdir.mkdir(exist_ok=True)
    jsonl = next(f for f in release.files.all() if f.format == "jsonl")
    with default_storage.open(jsonl.path, "rb") as stored:
        (workdir / "data.jsonl").write_bytes(stored.read())
    manifest = {key: value for key, value in release.manifest.items() if key != "files"}
    return manifest, workdir


def test_datasheet_has_every_section_with_the_right_numbers(built, tmp_path):
    manifest, workdir = _workdir(built, tmp_path)

    entry = datasheet_write(release=built, manifest=manifest, workdir=workdir)

    text = (workdir / DATASHEET_FILE).read_text()
    for heading in (
        "# Datasheet: Reviews v1 · Spring",
        "## Motivation and use",
        "## Instructions given to annotators",
        "## Task configuration",
        "## Collection",
        "## Agreement",
        "## Gold accuracy",
        "## Consensus and selection",
        "## Label distribution",
        "## Known caveats",
    ):
        assert heading in text, heading
    assert "**Purpose:** Train a review classifier." in text
    assert "**Licence:** CC BY 4.0" in text
    assert "**Intended use:** Research only." in text
    assert "> Pick the **sentiment**.\n>\n> Ignore sarcasm." in text
    assert "- Task type: Single label (`single_label`)" in text
    assert "- Labels: `positive`, `negative`" in text
    assert "- Items: 14 (2 gold)" in text
    assert "- Annotations: 42" in text
    assert "- Workers: 3" in text
    assert "- Overlap (answers wanted per item): 3" in text
    assert "- Gold ratio: 15%" in text
    assert "- Time span: 2026-03-01 09:30 UTC to 2026-03-03 09:30 UTC" in text
    assert "Vetted crowd (External crowd, Label items)" in text
    assert "- Qualification test: 0 test items, pass mark 75%, 2 attempts allowed" in text
    # per-worker gold accuracy 0, 0.5, 1 -> quartiles 0, 25, 50, 75, 100 %
    assert "(3 workers, 6 gold answers)" in text
    assert "| 0% | 25% | 50% | 75% | 100% |" in text
    # gold items are released too: 9 + 1 positive, 3 + 1 negative (2 of 3 on the second)
    assert "| positive | 10 | 71.4% | 30 |" in text
    assert "| negative | 4 | 28.6% | 12 |" in text
    assert "Class balance (smallest / largest label): 0.40." in text
    assert "- Labels with fewer than 10 items: `negative` (4)." in text
    assert "- Fleiss' kappa: 1.000" in text
    assert "Schema version 1: 1 answers superseded" in text
    assert "- Selection policy: every item with a consensus" in text
    assert entry == {
        "format": "datasheet",
        "path": "datasheet.md",
        "content_type": "text/markdown; charset=utf-8",
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "size": len(text.encode()),
    }
    built.refresh_from_db()
    assert built.datasheet == text


def test_datasheet_is_deterministic_and_ignores_later_changes(built, tmp_path, owner):
    manifest, workdir = _workdir(built, tmp_path)
    first = datasheet_render(release=built, manifest=manifest, workdir=workdir)
    # later work on the project: new answers, a new gold score, another release
    item = ItemFactory(project=built.project)
    AnnotationFactory(item=item, author=owner, value={"label": "negative"})
    WorkerScore.objects.create(
        project=built.project,
        worker=owner,
        gold_seen=10,
        gold_correct=1,
        computed_at=START,
    )

    again = datasheet_render(release=built, manifest=manifest, workdir=workdir)

    assert again == first


def test_caveats_flag_few_workers_low_agreement_and_missing_gold(project, owner, tmp_path):
    a, b = UserFactory(username="x-1"), UserFactory(username="x-2")
    for n in range(4):
        item = ItemFactory(project=project)
        AnnotationFactory(item=item, author=a, value={"label": "positive"})
        second = "negative" if n % 2 else "positive"
        AnnotationFactory(item=item, author=b, value={"label": second})
    release = release_build(release=make_release(project, owner))
    manifest, workdir = _workdir(release, tmp_path)

    text = datasheet_render(release=release, manifest=manifest, workdir=workdir)

    assert "- Few workers: 2 (labels may reflect individual judgement)." in text
    assert "Low agreement: fleiss_kappa = " in text
    assert "No gold answers: worker accuracy was not measured." in text
    assert "No answers on gold items in this release." in text
    assert "**Purpose:** _not stated_" in text


def test_policy_and_split_from_the_manifest_are_described(built, tmp_path):
    manifest, workdir = _workdir(built, tmp_path)
    manifest["policy"] = {"mode": "confidence", "min_confidence": 0.8, "exclude_flagged": True}
    manifest["split"] = {"seed": 7, "ratios": {"train": 0.8, "validation": 0.1, "test": 0.1}}

    text = datasheet_render(release=built, manifest=manifest, workdir=workdir)

    assert (
        "- Selection policy: items with consensus confidence ≥ 0.8; "
        "labels of flagged or excluded workers left out"
    ) in text
    assert "- Split: train 80%, validation 10%, test 10%; seed 7" in text


def test_detail_page_renders_the_datasheet_sanitised(built, tmp_path, client, owner):
    manifest, workdir = _workdir(built, tmp_path)
    datasheet_write(release=built, manifest=manifest, workdir=workdir)
    Release.objects.filter(pk=built.pk).update(
        datasheet=built.datasheet + "\n<script>alert(1)</script>\n"
    )
    client.force_login(owner)

    page = client.get(reverse("releases:release-detail", args=[built.pk])).content.decode()

    assert 'id="release-datasheet"' in page
    assert "<h2>Gold accuracy</h2>" in page
    assert "<strong>sentiment</strong>" in page
    assert "<script>alert(1)</script>" not in page
    assert "Train a review classifier." in page
