"""The bounding-box task type: validation, agreement, consensus and the COCO export."""

from __future__ import annotations

import io
import json
import math
import random

import pytest
from django.core.exceptions import ValidationError
from pycocotools.coco import COCO

from annotation.services import annotation_value_clean
from annotation.task_types import ExportRow, TaskConfig, Vote, task_type_get
from annotation.task_types.boxes import TASK_TYPE
from tests.annotation.factories import ItemFactory, ProjectFactory

LABELS = (
    {"value": "person", "hotkey": "p", "colour": "#0072b2"},
    {"value": "car", "hotkey": "c", "colour": "#d55e00"},
    {"value": "bike", "hotkey": "b", "colour": "#009e73"},
)
IMAGE = {"image": "imports/street.jpg", "width": 100, "height": 50}


def config(**options):
    return TaskConfig(task_type="boxes", labels=LABELS, options=options)


def box(x, y, w, h, label="person"):
    return {"x": x, "y": y, "w": w, "h": h, "label": label}


def clean(boxes, *, item_data=IMAGE, **options):
    return TASK_TYPE.value_clean({"boxes": boxes}, config=config(**options), item_data=item_data)


def errors_of(excinfo):
    return excinfo.value.message_dict


def vote(worker_id, *boxes, weight=1.0):
    return Vote(worker_id=worker_id, value={"boxes": list(boxes)}, weight=weight)


# --- registry, options, item data ----------------------------------------------------------------


def test_boxes_is_discovered_with_its_contract():
    # when
    task_type = task_type_get("boxes")

    # then
    assert task_type is TASK_TYPE
    assert task_type.media == ("image",)
    assert task_type.categorical is False
    assert task_type.needs_labels is True
    assert task_type.widget == "annotation/widgets/boxes.html"
    assert [form.key for form in task_type.export_forms] == ["coco"]


def test_options_clean_defaults_and_values():
    # when
    defaults = TASK_TYPE.options_clean(None, labels=LABELS)
    given = TASK_TYPE.options_clean({"allow_none": False, "min_size": 4.5}, labels=LABELS)

    # then
    assert defaults == {"allow_none": True, "min_size": 1}
    assert given == {"allow_none": False, "min_size": 4.5}


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"allow_none": "yes"}, "options.allow_none"),
        ({"min_size": 0}, "options.min_size"),
        ({"min_size": -2}, "options.min_size"),
        ({"min_size": True}, "options.min_size"),
        ({"min_size": "3"}, "options.min_size"),
        ({"min_size": math.inf}, "options.min_size"),
        ({"max_boxes": 3}, "options.max_boxes"),
    ],
)
def test_options_clean_refuses_bad_options(options, key):
    # when
    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.options_clean(options, labels=LABELS)

    # then
    assert key in errors_of(excinfo)


def test_item_data_clean_accepts_an_image_with_its_size():
    # when
    data = TASK_TYPE.item_data_clean(dict(IMAGE), config=config())

    # then
    assert data == IMAGE


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"image": "a.jpg", "height": 5}, "data.width"),
        ({"image": "a.jpg", "width": 0, "height": 5}, "data.width"),
        ({"image": "a.jpg", "width": 5, "height": 2.5}, "data.height"),
        ({"image": "a.jpg", "width": True, "height": 5}, "data.width"),
        ({"image": " ", "width": 5, "height": 5}, "data.image"),
        ({"text": "no image", "width": 5, "height": 5}, "data.image"),
        (["a.jpg"], "data"),
    ],
)
def test_item_data_clean_refuses_incomplete_items(data, key):
    # when
    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.item_data_clean(data, config=config())

    # then
    assert key in errors_of(excinfo)


# --- value_clean ---------------------------------------------------------------------------------


def test_value_clean_rounds_sorts_and_drops_duplicates():
    # given
    boxes = [
        box(10.004, 5, 20.0, 10.129, "person"),
        box(1, 2, 3, 4, "car"),
        box(10, 5.0, 20, 10.13, "person"),  # equal to the first once rounded
    ]

    # when
    value = clean(boxes)

    # then
    assert value == {"boxes": [box(1, 2, 3, 4, "car"), box(10, 5, 20, 10.13, "person")]}
    assert all(isinstance(value["boxes"][1][name], int) for name in ("x", "y", "w"))
    assert json.dumps(value) == json.dumps(clean(list(reversed(boxes))))


def test_value_clean_accepts_a_box_touching_the_image_edges():
    # when
    value = clean([box(99.99, 0, 0.01, 50), box(0, 49.5, 100, 0.5, "car")], min_size=0.01)

    # then
    assert len(value["boxes"]) == 2


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (box(1, 1, 0, 5), "value.boxes[0].w"),
        (box(1, 1, 5, 0.004), "value.boxes[0].h"),  # rounds to zero area
        (box(1, 1, -3, 5), "value.boxes[0].w"),
        (box(1, 1, 0.5, 5), "value.boxes[0].w"),  # under min_size 1
    ],
)
def test_value_clean_refuses_empty_or_tiny_boxes(raw, key):
    # when
    with pytest.raises(ValidationError) as excinfo:
        clean([raw])

    # then
    assert list(errors_of(excinfo)) == [key]


def test_value_clean_applies_min_size():
    # when
    with pytest.raises(ValidationError) as excinfo:
        clean([box(0, 0, 10, 10), box(0, 0, 10, 4.99)], min_size=5)

    # then
    assert list(errors_of(excinfo)) == ["value.boxes[1].h"]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (box(-0.5, 1, 5, 5), "value.boxes[0].x"),
        (box(1, -1, 5, 5), "value.boxes[0].y"),
        (box(95.01, 1, 5, 5), "value.boxes[0].w"),
        (box(0, 10, 5, 40.01), "value.boxes[0].h"),
    ],
)
def test_value_clean_refuses_boxes_outside_the_image(raw, key):
    # when
    with pytest.raises(ValidationError) as excinfo:
        clean([raw])

    # then
    assert list(errors_of(excinfo)) == [key]


def test_value_clean_without_item_checks_only_the_sign():
    # when
    value = clean([box(500, 500, 1000, 1000)], item_data=None)

    # then
    assert value == {"boxes": [box(500, 500, 1000, 1000)]}
    with pytest.raises(ValidationError):
        clean([box(-1, 0, 5, 5)], item_data=None)


def test_value_clean_refuses_unknown_labels_with_the_index():
    # when
    with pytest.raises(ValidationError) as excinfo:
        clean([box(1, 1, 5, 5), box(1, 1, 5, 5, "tree"), box(2, 2, 5, 5, None)])

    # then
    assert sorted(errors_of(excinfo)) == ["value.boxes[1].label", "value.boxes[2].label"]
    assert "tree" in errors_of(excinfo)["value.boxes[1].label"][0]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (box(True, 1, 5, 5), "value.boxes[0].x"),
        (box("1", 1, 5, 5), "value.boxes[0].x"),
        (box(1, math.nan, 5, 5), "value.boxes[0].y"),
        (box(1, 1, math.inf, 5), "value.boxes[0].w"),
        (box(1, 1, 5, None), "value.boxes[0].h"),
        ({"x": 1, "y": 1, "w": 5, "label": "car"}, "value.boxes[0].h"),
        ({**box(1, 1, 5, 5), "score": 0.9}, "value.boxes[0].score"),
        ([1, 1, 5, 5], "value.boxes[0]"),
    ],
)
def test_value_clean_refuses_wrong_types(raw, key):
    # when
    with pytest.raises(ValidationError) as excinfo:
        clean([raw])

    # then
    assert key in errors_of(excinfo)


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ({"boxes": "none"}, "value.boxes"),
        ({"label": "car"}, "value.boxes"),
        ([box(1, 1, 5, 5)], "value.boxes"),
        ({"boxes": [], "labels": []}, "value.labels"),
    ],
)
def test_value_clean_refuses_other_shapes(value, key):
    # when
    with pytest.raises(ValidationError) as excinfo:
        TASK_TYPE.value_clean(value, config=config(), item_data=IMAGE)

    # then
    assert key in errors_of(excinfo)


def test_value_clean_empty_list_depends_on_allow_none():
    # when
    allowed = clean([])
    with pytest.raises(ValidationError) as excinfo:
        clean([], allow_none=False)

    # then
    assert allowed == {"boxes": []}
    assert list(errors_of(excinfo)) == ["value.boxes"]


def test_value_clean_refuses_more_than_500_boxes():
    # given
    many = [box(i % 90, 0, 1 + i // 90, 1) for i in range(501)]

    # when
    with pytest.raises(ValidationError) as excinfo:
        clean(many)

    # then
    assert list(errors_of(excinfo)) == ["value.boxes"]
    assert len(clean(many[:500])["boxes"]) == 500


def test_relabel_merge_then_clean_keeps_one_of_two_equal_boxes():
    # given
    stored = clean([box(1, 1, 5, 5, "bike"), box(1, 1, 5, 5, "car")])

    # when
    merged = TASK_TYPE.relabel(stored, {"bike": "car"})

    # then
    assert clean(merged["boxes"]) == {"boxes": [box(1, 1, 5, 5, "car")]}


@pytest.mark.django_db
def test_annotation_value_clean_checks_boxes_against_the_item():
    # given
    project = ProjectFactory(task_type="boxes", labels=[dict(label) for label in LABELS])
    item = ItemFactory(project=project, data=dict(IMAGE), content_hash="street")

    # when
    with pytest.raises(ValidationError) as excinfo:
        annotation_value_clean(project=project, value={"boxes": [box(90, 0, 20, 5)]}, item=item)
    ok = annotation_value_clean(project=project, value={"boxes": [box(80, 0, 20, 5)]}, item=item)

    # then
    assert list(errors_of(excinfo)) == ["value.boxes[0].w"]
    assert ok == {"boxes": [box(80, 0, 20, 5)]}


def test_summary_counts_labels():
    # then
    assert TASK_TYPE.summary({"boxes": []}) == "no boxes"
    assert TASK_TYPE.summary({"boxes": [box(0, 0, 1, 1, "car"), box(0, 0, 1, 1)]}) == (
        "2 boxes: car ×1, person ×1"
    )


# --- agreement -----------------------------------------------------------------------------------


def agreement(answers):
    return TASK_TYPE.agreement(answers, config=config())


def test_agreement_is_none_without_two_annotators_on_an_item():
    # when
    figures = agreement({1: [vote(1, box(0, 0, 10, 10))], 2: [vote(2, box(0, 0, 5, 5))]})

    # then
    assert figures == {"mean_iou": None, "box_f1_50": None}


def test_agreement_perfect():
    # given
    boxes = [box(0, 0, 10, 10), box(20, 20, 5, 5, "car")]

    # when
    figures = agreement({1: [vote(1, *boxes), vote(2, *boxes), vote(3, *boxes)]})

    # then
    assert figures == {"mean_iou": 1.0, "box_f1_50": 1.0}


def test_agreement_one_annotator_missing_a_box():
    # when
    figures = agreement(
        {1: [vote(1, box(0, 0, 10, 10), box(40, 0, 10, 10)), vote(2, box(0, 0, 10, 10))]}
    )

    # then: one match of two boxes against one: F1 = 2 * 1 / 3
    assert figures["mean_iou"] == pytest.approx(1.0)
    assert figures["box_f1_50"] == pytest.approx(2 / 3)


def test_agreement_needs_the_same_label():
    # when
    figures = agreement({1: [vote(1, box(0, 0, 10, 10, "car")), vote(2, box(0, 0, 10, 10))]})

    # then: boxes drawn but none matched
    assert figures == {"mean_iou": 0.0, "box_f1_50": 0.0}


def test_agreement_partial_overlap_counts_in_iou_but_not_in_f1():
    # when: [0, 10] against [5, 15] on the same rows: 50 / 150
    figures = agreement({1: [vote(1, box(0, 0, 10, 10)), vote(2, box(5, 0, 10, 10))]})

    # then
    assert figures["mean_iou"] == pytest.approx(1 / 3)
    assert figures["box_f1_50"] == 0.0


def test_agreement_matches_one_to_one_maximising_total_iou():
    # given: greedy would pair a1-b1 (IoU 9/11) and leave a2 alone; the optimum is a1-b2 (0.6)
    # plus a2-b1 (1/3)
    first = vote(1, box(0, 0, 10, 10), box(6, 0, 10, 10))
    second = vote(2, box(1, 0, 10, 10), box(0, 0, 6, 10))

    # when
    figures = agreement({1: [first, second]})

    # then
    assert figures["mean_iou"] == pytest.approx((0.6 + 1 / 3) / 2)
    assert figures["box_f1_50"] == pytest.approx(2 * 1 / 4)


def test_agreement_pools_items_and_pairs():
    # given
    a, b = box(0, 0, 10, 10), box(5, 0, 10, 10)
    answers = {
        1: [vote(1, a), vote(2, a), vote(3, b)],  # IoUs 1, 1/3, 1/3; hits 1 of 3 pairs
        2: [vote(1, a), vote(2, a)],  # IoU 1, hit
        3: [vote(1, a)],  # one annotator: not compared
    }

    # when
    figures = agreement(answers)

    # then
    assert figures["mean_iou"] == pytest.approx((1 + 1 / 3 + 1 / 3 + 1) / 4)
    assert figures["box_f1_50"] == pytest.approx(2 * 2 / 8)


def test_agreement_two_empty_answers_agree_and_are_neutral_beside_boxes():
    # given
    both_empty = {1: [vote(1), vote(2)]}
    with_boxes = {2: [vote(1, box(0, 0, 10, 10)), vote(2, box(5, 0, 10, 10))]}

    # when
    only_empty = agreement(both_empty)
    mixed = agreement({**both_empty, **with_boxes})

    # then: nothing drawn anywhere is full agreement; beside boxes an empty pair changes nothing
    assert only_empty == {"mean_iou": 1.0, "box_f1_50": 1.0}
    assert mixed == agreement(with_boxes)


# --- consensus -----------------------------------------------------------------------------------


def consensus(votes, **options):
    return TASK_TYPE.consensus(votes, config=config(**options))


def test_consensus_of_a_single_annotator_is_their_answer():
    # given
    boxes = [box(1, 2, 3, 4, "car"), box(10, 10, 5, 5)]

    # when
    result = consensus([vote(7, *boxes)])

    # then
    assert result.value == {"boxes": boxes}
    assert result.support == 1.0


def test_consensus_perfect_agreement():
    # given
    boxes = [box(1, 2, 3, 4, "car"), box(10, 10, 5, 5)]

    # when
    result = consensus([vote(1, *boxes), vote(2, *boxes), vote(3, *boxes)])

    # then
    assert result.value == {"boxes": boxes}
    assert result.support == 1.0


def test_consensus_nobody_drew_anything():
    # when
    result = consensus([vote(1), vote(2)])

    # then
    assert result.value == {"boxes": []}
    assert result.support == 1.0
    assert consensus([vote(1), vote(2)], allow_none=False) is None
    assert consensus([]) is None


def test_consensus_one_annotator_missing_a_box():
    # given: everyone drew the person; two of three drew the car (slightly apart)
    person = box(0, 0, 10, 10)
    votes = [
        vote(1, person, box(50, 0, 10, 10, "car")),
        vote(2, person, box(52, 0, 10, 10, "car")),
        vote(3, person),
    ]

    # when
    result = consensus(votes)

    # then
    assert result.value == {"boxes": [box(51, 0, 10, 10, "car"), person]}
    assert result.support == pytest.approx((2 / 3 + 1) / 2)


def test_consensus_drops_a_box_of_half_the_weight():
    # when
    result = consensus([vote(1, box(0, 0, 10, 10)), vote(2)])

    # then
    assert result.value == {"boxes": []}
    assert result.support == pytest.approx(0.5)
    assert consensus([vote(1, box(0, 0, 10, 10)), vote(2)], allow_none=False) is None


def test_consensus_label_majority_and_mean_of_that_label():
    # given
    votes = [
        vote(1, box(0, 0, 10, 10, "car")),
        vote(2, box(2, 0, 10, 10, "car")),
        vote(3, box(1, 1, 10, 10, "bike")),
    ]

    # when
    result = consensus(votes)

    # then: the bike box is in the cluster but not in the coordinates
    assert result.value == {"boxes": [box(1, 0, 10, 10, "car")]}
    assert result.support == pytest.approx(2 / 3)


def test_consensus_label_tie_drops_the_box():
    # when
    result = consensus([vote(1, box(0, 0, 10, 10, "car")), vote(2, box(0, 0, 10, 10, "bike"))])

    # then: both drew it, so dropping it is backed by nobody
    assert result.value == {"boxes": []}
    assert result.support == 0.0


def test_consensus_weights_decide_presence_and_coordinates():
    # given
    heavy = vote(1, box(0, 0, 10, 10), weight=3.0)

    # when
    kept = consensus([heavy, vote(2), vote(3)])
    dropped = consensus([vote(1, weight=3.0), vote(2, box(0, 0, 10, 10)), vote(3)])
    mean = consensus([heavy, vote(2, box(2, 0, 10, 10))])

    # then
    assert kept.value == {"boxes": [box(0, 0, 10, 10)]}
    assert kept.support == pytest.approx(3 / 5)
    assert dropped.value == {"boxes": []}
    assert dropped.support == pytest.approx(4 / 5)
    assert mean.value == {"boxes": [box(0.5, 0, 10, 10)]}  # (3 * 0 + 1 * 2) / 4
    assert mean.support == 1.0


def test_consensus_weighted_label_majority():
    # when
    result = consensus(
        [
            vote(1, box(0, 0, 10, 10, "car"), weight=0.5),
            vote(2, box(0, 0, 10, 10, "car"), weight=0.5),
            vote(3, box(0, 0, 10, 10, "bike"), weight=2.0),
        ]
    )

    # then
    assert result.value == {"boxes": [box(0, 0, 10, 10, "bike")]}
    assert result.support == pytest.approx(2 / 3)


def test_consensus_prefers_same_label_clusters_for_overlapping_objects():
    # given: a person on a bike; the second annotator's boxes swap the geometry slightly
    first = vote(1, box(0, 0, 10, 10), box(1, 0, 10, 10, "bike"))
    second = vote(2, box(1, 0, 10, 10), box(0, 0, 10, 10, "bike"))

    # when
    result = consensus([first, second])

    # then
    assert result.value == {"boxes": [box(0.5, 0, 10, 10, "bike"), box(0.5, 0, 10, 10)]}
    assert result.support == 1.0


def test_consensus_ignores_vote_order_and_stays_valid():
    # given
    rng = random.Random(4)
    votes = [
        vote(
            worker,
            *[
                box(rng.uniform(0, 60), rng.uniform(0, 20), 30, 20, rng.choice(["car", "person"]))
                for _ in range(3)
            ],
            weight=rng.uniform(0.5, 2),
        )
        for worker in range(5)
    ]
    votes = [
        Vote(worker_id=v.worker_id, value=clean(v.value["boxes"]), weight=v.weight) for v in votes
    ]

    # when
    results = [consensus(rng.sample(votes, len(votes))) for _ in range(4)]

    # then
    assert all(result == results[0] for result in results)
    assert clean(results[0].value["boxes"]) == results[0].value


# --- COCO export ---------------------------------------------------------------------------------


def rows():
    yield ExportRow(item_id=11, data=dict(IMAGE), value={"boxes": [box(1, 2, 3, 4, "car")]})
    yield ExportRow(item_id=12, data=dict(IMAGE), value=None)  # no consensus: left out
    yield ExportRow(
        item_id=13,
        data={"image": "https://cdn.example.org/a/b/dog.png?sig=1", "width": 64, "height": 48},
        value={"boxes": [box(0.5, 0, 10.25, 8), box(5, 5, 5, 5, "bike")]},
    )
    yield ExportRow(
        item_id=14, data={"image": "empty.jpg", "width": 8, "height": 8}, value={"boxes": []}
    )


def coco_bytes(source):
    out = io.BytesIO()
    TASK_TYPE.export_forms[0].write(source, out, config())
    return out.getvalue()


def test_coco_export_loads_in_pycocotools(tmp_path):
    # given
    path = tmp_path / "coco.json"
    path.write_bytes(coco_bytes(rows()))

    # when
    coco = COCO(str(path))

    # then
    assert sorted(coco.getImgIds()) == [11, 13, 14]
    assert coco.loadImgs([13])[0] == {"id": 13, "file_name": "dog.png", "width": 64, "height": 48}
    assert coco.loadImgs([11])[0]["file_name"] == "street.jpg"
    assert {cat["id"]: cat["name"] for cat in coco.loadCats(coco.getCatIds())} == {
        1: "person",
        2: "car",
        3: "bike",
    }
    assert coco.getAnnIds(imgIds=[14]) == []
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[13]))
    assert [(a["bbox"], a["area"], a["iscrowd"]) for a in anns] == [
        ([0.5, 0, 10.25, 8], 82, 0),
        ([5, 5, 5, 5], 25, 0),
    ]
    assert [coco.loadCats(a["category_id"])[0]["name"] for a in anns] == ["person", "bike"]
    assert coco.getAnnIds(catIds=[2]) == [1]
    assert coco.loadAnns(1)[0]["image_id"] == 11
    assert sorted(a["id"] for a in coco.loadAnns(coco.getAnnIds())) == [1, 2, 3]


def test_coco_export_is_one_compact_document_and_byte_identical():
    # when
    first, second = coco_bytes(rows()), coco_bytes(iter(list(rows())))

    # then
    assert first == second
    document = json.loads(first)
    assert list(document) == ["info", "categories", "images", "annotations"]
    assert document["info"]["description"]
    assert b" " not in first.replace(b"Assay bounding boxes (COCO object detection)", b"")


def test_coco_export_with_no_rows_is_valid():
    # when
    document = json.loads(coco_bytes(iter([])))

    # then
    assert document["images"] == []
    assert document["annotations"] == []
    assert len(document["categories"]) == 3


def test_coco_export_refuses_labels_outside_the_set():
    # given
    stray = [ExportRow(item_id=1, data=dict(IMAGE), value={"boxes": [box(0, 0, 1, 1, "tree")]})]

    # when
    with pytest.raises(ValueError, match="tree"):
        coco_bytes(stray)
