"""Length-preserving masking for task types whose answers are character offsets (spans)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from crowd.privacy import FILL, Masking, data_mask, items_mask, text_mask
from tests.crowd.test_privacy import ORIGINALS, TICKET

MASKED_RUN = re.compile(r"\[(?:EMAIL|PHONE|CARD|IP|URL|NAME|NUMBER)\]•*|•+")


def masked_positions(text: str) -> set[int]:
    return {i for match in MASKED_RUN.finditer(text) for i in range(match.start(), match.end())}


@pytest.mark.parametrize(
    ("text", "piece", "stand_in"),
    [
        ("Write to jane.doe@example.org today", "jane.doe@example.org", "[EMAIL]"),
        ("Call +1 (555) 123-4567 now", "+1 (555) 123-4567", "[PHONE]"),
        ("Card 4111 1111 1111 1111 12/27", "4111 1111 1111 1111", "[CARD]"),
        ("From 10.0.0.1, then", "10.0.0.1", "[IP]"),
        ("v6 ::1 ok", "::1", "•••"),  # shorter than "[IP]": bullets only
        ("See https://example.com/u/jdoe.", "https://example.com/u/jdoe", "[URL]"),
        ("Dear Dr. Amelia Hart, thanks", "Amelia Hart", "[NAME]"),
        ("Ask Mrs Bo", "Bo", "••"),
        ("Ok.\nKind regards,\nPriya Raman\n", "Priya Raman", "[NAME]"),
        ("Ok.\nCheers,\nLena Fischer. \nPS", "Lena Fischer", "[NAME]"),  # keeps ". "
        ("Docs at https://example.com/docs?page=2 are public.", "", ""),
    ],
)
def test_text_mask_keeping_offsets_replaces_each_piece_by_one_as_long(text, piece, stand_in):
    masked = text_mask(text, keep_offsets=True)

    expected = text.replace(piece, stand_in.ljust(len(piece), FILL)) if piece else text
    assert masked == expected
    assert len(masked) == len(text)


@pytest.mark.parametrize(
    "text",
    [
        "Thanks, Bob.",
        "Regards,\n  Ann Lee .  ",
        "Call 0044 20 7946 0958 or +1 (555) 123-4567, card 4111-1111-1111-1111 12/27.",
        "See https://x.io/p?email=a%40b.co&x=1 and https://example.com/docs/a@b.co/10.0.0.1",
        "fe80::1ff:fe23:4567:890a, ::1, 8.8.8.8. 💳 4111111111111111 — Mrs Ōtake-Smith",
    ],
)
def test_text_mask_keeping_offsets_never_changes_the_length(text):
    masked = text_mask(text, keep_offsets=True, strict=True)

    assert len(masked) == len(text)
    assert masked != text
    changed = {i for i, (a, b) in enumerate(zip(text, masked, strict=True)) if a != b}
    assert changed <= masked_positions(masked)


def test_text_mask_keeping_offsets_leaves_every_other_character_in_place():
    masked = text_mask(TICKET, keep_offsets=True)

    assert len(masked) == len(TICKET)
    for original in ORIGINALS.values():
        assert original not in masked
    changed = {i for i, (a, b) in enumerate(zip(TICKET, masked, strict=True)) if a != b}
    assert changed
    assert changed <= masked_positions(masked)
    for phrase in ("my order never arrived", "Version 2.4.1", "2024-03-15", "Best regards,"):
        assert masked.index(phrase) == TICKET.index(phrase)
    for placeholder in ("[EMAIL]", "[PHONE]", "[CARD]", "[IP]", "[URL]", "[NAME]"):
        assert placeholder in masked


def test_a_span_on_the_masked_text_points_at_the_same_words_in_the_original():
    text = "Mr Jonathan Smithson wrote from 10.20.30.40: the parcel was damaged 😡 again."
    masked = text_mask(text, keep_offsets=True)
    start = text.index("parcel was damaged")
    span = {"start": start, "end": start + len("parcel was damaged"), "label": "complaint"}

    assert masked[span["start"] : span["end"]] == text[span["start"] : span["end"]]
    assert masked.index("😡") == text.index("😡")  # positions count characters (code points)
    assert "Jonathan" not in masked
    assert "10.20.30.40" not in masked


def test_text_mask_keeping_offsets_is_deterministic_and_idempotent():
    once = text_mask(TICKET, keep_offsets=True)

    assert text_mask(TICKET, keep_offsets=True) == once
    assert text_mask(once, keep_offsets=True) == once


def test_the_default_masking_is_unchanged():
    assert text_mask("Write to jane.doe@example.org today") == "Write to [EMAIL] today"
    assert FILL not in text_mask(TICKET)


def test_data_mask_keeping_offsets_covers_nested_and_strict_fields():
    data = {
        "text": "Sarah Connor called from 10.1.2.3",
        "author": "Sarah Connor, customer 88412345",
        "meta": {"emails": ["a.b@example.com"], "stars": 5},
    }

    masked = data_mask(data, sensitive_fields={"author"}, keep_offsets=True)

    assert masked == {
        "text": "Sarah Connor called from [IP]••••",
        "author": "[NAME]••••••, customer [NUMBER]",  # 8 digits, 8 characters
        "meta": {"emails": ["[EMAIL]••••••••"], "stars": 5},
    }


def test_items_mask_follows_the_maskings_keep_offsets():
    text = "Mail jane.doe@example.org now"
    spans_item = SimpleNamespace(data={"text": text})
    label_item = SimpleNamespace(data={"text": text})

    items_mask([spans_item], masking=Masking(keep_offsets=True))
    items_mask([label_item], masking=Masking())

    assert spans_item.data == {"text": "Mail [EMAIL]••••••••••••• now"}
    assert label_item.data == {"text": "Mail [EMAIL] now"}
    assert Masking(keep_offsets=True).apply({"text": text}) == spans_item.data


# --- the masking an external worker of a spans project gets, end to end ------------------------


@pytest.mark.django_db
def test_an_external_worker_of_a_spans_project_gets_offsets_that_fit_the_real_text(client_for):
    from annotation.models import Annotation, ProjectMember
    from crowd.models import Pool
    from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
    from tests.crowd.factories import join_pool, make_pool

    project = ProjectFactory(
        task_type="spans",
        labels=[{"value": "PERSON", "hotkey": "p"}, {"value": "PHONE", "hotkey": "n"}],
        overlap=1,
    )
    item = ItemFactory(project=project, data={"text": TICKET})
    pool = make_pool(project, name="Prolific")
    pool.kind = Pool.Kind.EXTERNAL_CROWD
    pool.save(update_fields=["kind"])
    worker = UserFactory()
    ProjectMember.objects.create(project=project, user=worker, role=ProjectMember.Role.ANNOTATOR)
    join_pool(pool, worker)
    api = client_for(worker)

    response = api.post(f"/api/v1/projects/{project.pk}/next/")
    assert response.status_code == 200, (response.status_code, response.content)
    body = response.json()

    shown = body["item"]["data"]["text"]
    assert shown == text_mask(TICKET, keep_offsets=True)
    assert len(shown) == len(TICKET)
    assert body["item"]["image_urls"] == {}
    start = shown.index("[") if "[" in shown else shown.index("•")
    end = next(
        i for i in range(start, len(shown)) if shown[i] not in "[]ABCDEFGHIJKLMNOPQRSTUVWXYZ•"
    )
    answer = {"spans": [{"start": start, "end": end, "label": "PHONE"}], "relations": []}
    submitted = api.post(
        f"/api/v1/assignments/{body['assignment']}/submit/",
        {"value": answer, "duration_ms": 800},
        format="json",
    )
    assert submitted.status_code == 200, submitted.json()
    stored = Annotation.objects.get(item=item).value["spans"][0]
    assert TICKET[stored["start"] : stored["end"]].strip()  # the span points at real characters
