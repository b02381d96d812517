"""The built-in model: training on vetted labels, predictions, serve ranks and retrain-due logic."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
from django.utils import timezone

from annotation.models import Item, Prediction
from quality.model import (
    MIN_VETTED,
    MODEL_NAME,
    ModelNotTrainableError,
    model_retrain_due,
    model_retrain_if_due,
    model_train,
    serve_ranks_compute,
    serving_order_set,
    vetted_count,
)
from quality.model.tasks import model_train_task
from quality.model.training import artifact_load, is_validation
from quality.models import ItemScore, ModelVersion
from tests.annotation.factories import ProjectFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]

POSITIVE = ["great", "wonderful", "excellent", "lovely", "superb", "delightful", "fantastic"]
NEGATIVE = ["awful", "terrible", "dreadful", "horrible", "poor", "disappointing", "broken"]
FILLER = ["the", "film", "service", "food", "room", "staff", "book", "phone", "was", "really"]


def _sentence(rng: random.Random, words: list[str]) -> str:
    return " ".join(rng.sample(FILLER, 3) + rng.sample(words, 2) + rng.sample(FILLER, 2))


def _item(project, text: str, *, gold=None) -> Item:
    return Item.objects.create(
        project=project,
        data={"text": text},
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
        gold=gold,
        is_gold=gold is not None,
        target=project.overlap,
    )


def _vet(item: Item, label: str = "", *, value=None, state=ItemScore.State.CONFIDENT) -> None:
    ItemScore.objects.create(
        item=item,
        project=item.project,
        label=label,
        value=value,
        state=state,
        confidence=0.95,
        computed_at=timezone.now(),
    )


def sentiment_project(project, *, vetted: int, unlabeled: int = 10, seed: int = 1):
    """`vetted` confident items (alternating classes, separable by their words), a few gold
    items among them, and `unlabeled` regular items with no consensus."""
    rng = random.Random(seed)
    for index in range(vetted):
        label = "positive" if index % 2 else "negative"
        text = f"{_sentence(rng, POSITIVE if label == 'positive' else NEGATIVE)} #{index}"
        if index % 10 == 0:
            _item(project, text, gold={"label": label})
        else:
            _vet(_item(project, text), label)
    for index in range(unlabeled):
        words = POSITIVE if index % 2 else NEGATIVE
        _item(project, f"{_sentence(rng, words)} unlabeled {index}")
    return project


def test_training_gives_a_ready_version_with_validation_accuracy(project):
    sentiment_project(project, vetted=60)

    version = model_train(project=project)

    version.refresh_from_db()
    assert version.status == ModelVersion.Status.READY, version.error
    assert version.version == 1
    assert version.train_count + version.validation_count == 60
    assert version.validation_count > 0
    held = [
        pk
        for pk in Item.objects.filter(project=project).values_list("pk", flat=True)
        if is_validation(project_id=project.pk, item_id=pk)
    ]
    assert held  # the split depends on ids only, never on labels
    assert version.validation_accuracy == pytest.approx(1.0)
    assert version.details["macro_f1"] == pytest.approx(1.0)
    assert version.details["vetted"] == 60
    assert version.trained_at is not None
    stored = artifact_load(version=version)
    assert stored["pipeline"].predict(["a wonderful superb film"])[0] == "positive"


def test_predictions_are_written_for_regular_items_only(project):
    sentiment_project(project, vetted=40, unlabeled=6)

    version = model_train(project=project)

    predictions = Prediction.objects.filter(project=project, source=Prediction.Source.MODEL)
    regular = Item.objects.filter(project=project, is_gold=False)
    assert predictions.count() == regular.count() == 36 + 6
    assert not predictions.filter(item__is_gold=True).exists()
    assert set(predictions.values_list("model_name", "model_version")) == {(MODEL_NAME, "1")}
    assert version.details["predicted"] == 42
    unlabeled = [
        p for p in predictions.select_related("item") if "unlabeled" in p.item.data["text"]
    ]
    assert len(unlabeled) == 6
    for prediction in unlabeled:
        words = set(prediction.item.data["text"].split())
        expected = "positive" if words & set(POSITIVE) else "negative"
        assert prediction.value == {"label": expected}
        assert 0.5 <= prediction.score <= 1.0
    # Retraining replaces the earlier version's predictions.
    model_train(project=project)
    assert set(predictions.values_list("model_version", flat=True)) == {"2"}
    assert predictions.count() == 42


def test_not_enough_vetted_labels_means_no_training(project):
    sentiment_project(project, vetted=MIN_VETTED - 1)
    # Open and doubtful consensus does not count as vetted.
    _vet(_item(project, "great lovely open item"), "positive", state=ItemScore.State.OPEN)
    _vet(_item(project, "awful poor doubtful item"), "negative", state=ItemScore.State.DOUBTFUL)

    assert vetted_count(project=project) == MIN_VETTED - 1
    with pytest.raises(ModelNotTrainableError, match=f"at least {MIN_VETTED} vetted labels"):
        model_train(project=project)
    assert not ModelVersion.objects.filter(project=project).exists()
    assert model_retrain_due(project=project) is False
    assert model_train_task(project.pk) is None


def test_reviewed_items_and_gold_count_as_vetted(project):
    sentiment_project(project, vetted=MIN_VETTED - 1)
    _vet(_item(project, "superb excellent reviewed"), "positive", state=ItemScore.State.REVIEWED)

    assert vetted_count(project=project) == MIN_VETTED
    assert model_retrain_due(project=project) is True


def test_one_class_training_set_fails_the_version_with_the_reason(project):
    for index in range(MIN_VETTED):
        _vet(_item(project, f"great film {index}"), "positive")

    version = model_train(project=project)

    assert version.status == ModelVersion.Status.FAILED
    assert "fewer than two labels" in version.error
    assert not Prediction.objects.filter(project=project).exists()


def test_unsupported_task_type_does_not_train(owner):
    project = ProjectFactory(created_by=owner, task_type="free_text", labels=[])
    with pytest.raises(ModelNotTrainableError, match="single- and multi-label"):
        model_train(project=project)
    assert model_retrain_due(project=project) is False


def test_multi_label_training_and_predictions(owner):
    labels = [
        {"value": "food", "hotkey": "1"},
        {"value": "price", "hotkey": "2"},
        {"value": "staff", "hotkey": "3"},
    ]
    project = ProjectFactory(
        created_by=owner, task_type="multi_label", labels=labels, task_options={"allow_none": False}
    )
    words = {"food": ["tasty", "delicious", "bland"], "price": ["cheap", "expensive", "pricey"]}
    words["staff"] = ["waiter", "rude", "friendly"]
    rng = random.Random(3)
    combos = [("food",), ("price",), ("staff",), ("food", "price"), ("price", "staff")]
    for index in range(60):
        picked = combos[index % len(combos)]
        text = " ".join(rng.choice(words[label]) for label in picked for _ in range(2))
        _vet(_item(project, f"{text} visit {index}"), value={"labels": list(picked)})
    new = _item(project, "the waiter was rude and friendly")

    version = model_train(project=project)

    assert version.status == ModelVersion.Status.READY, version.error
    assert version.validation_accuracy is not None
    assert version.validation_accuracy >= 0.8
    prediction = Prediction.objects.get(item=new, source=Prediction.Source.MODEL)
    assert prediction.value == {"labels": ["staff"]}
    assert 0 < prediction.score <= 1


def test_retrain_is_due_after_growth_of_a_fifth_or_fifty(
    project, monkeypatch, django_capture_on_commit_callbacks
):
    sentiment_project(project, vetted=40, unlabeled=0)
    assert model_retrain_due(project=project) is True

    queued = []
    monkeypatch.setattr(model_train_task, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        assert model_retrain_if_due(project=project) is True
    assert queued == [project.pk]  # queued once the transaction commits

    model_train(project=project)
    assert model_retrain_due(project=project) is False
    rng = random.Random(9)
    for index in range(7):  # 40 -> 47: under 20% growth
        _vet(_item(project, f"{_sentence(rng, POSITIVE)} more {index}"), "positive")
    assert model_retrain_due(project=project) is False
    _vet(_item(project, "lovely superb one more"), "positive")  # 48: 20% more
    assert model_retrain_due(project=project) is True

    # A version still training blocks a second run.
    ModelVersion.objects.create(project=project, version=9)
    assert model_retrain_due(project=project) is False


def test_retrain_due_with_fifty_more_on_a_large_base(project):
    version = ModelVersion.objects.create(
        project=project, version=1, status=ModelVersion.Status.READY, details={"vetted": 1000}
    )
    assert version.details["vetted"] == 1000
    sentiment_project(project, vetted=1049, unlabeled=0)
    assert model_retrain_due(project=project) is False
    _vet(_item(project, "excellent lovely number fifty"), "positive")
    assert model_retrain_due(project=project) is True


def test_train_task_runs_through_celery(project, celery_eager):
    sentiment_project(project, vetted=40)

    result = model_train_task.delay(project.pk)

    assert result.get() == 1
    assert ModelVersion.objects.get(project=project).status == ModelVersion.Status.READY


# --- serve ranks ------------------------------------------------------------------------------


def test_serve_ranks_uncertainty_and_rare_first():
    predicted = [("a",), ("a",), ("a",), ("b",)]
    confidence = [0.9, 0.6, 0.99, 0.7]

    uncertainty = serve_ranks_compute(
        predicted=predicted, confidence=confidence, order="uncertainty"
    )
    rare = serve_ranks_compute(predicted=predicted, confidence=confidence, order="rare_first")

    assert np.allclose(uncertainty, [0.1, 0.4, 0.01, 0.3])
    assert np.allclose(rare, [4 / 3, 4 / 3, 4 / 3, 4.0])
    multi = serve_ranks_compute(
        predicted=[("a", "b"), ("a",), (), ()], confidence=[1, 1, 1, 1], order="rare_first"
    )
    assert np.allclose(multi, [4.0, 2.0, 2.0, 2.0])  # an answer ranks by its rarest label
    with pytest.raises(ValueError, match="unknown serving order"):
        serve_ranks_compute(predicted=[], confidence=[], order="random")


def test_training_sets_serve_ranks_by_the_serving_order(project):
    sentiment_project(project, vetted=40, unlabeled=6)
    project.serving_order = "uncertainty"
    project.save()

    model_train(project=project)

    predictions = {
        p.item_id: p.score
        for p in Prediction.objects.filter(project=project, source=Prediction.Source.MODEL)
    }
    ranks = dict(Item.objects.filter(project=project).values_list("pk", "serve_rank"))
    for item_id, score in predictions.items():
        assert ranks[item_id] == pytest.approx(1 - score)
    assert all(
        ranks[pk] == 0
        for pk in Item.objects.filter(project=project, is_gold=True).values_list("pk", flat=True)
    )

    serving_order_set(project=project, serving_order="rare_first")

    values = dict(Prediction.objects.filter(project=project).values_list("item_id", "value__label"))
    counts = {label: list(values.values()).count(label) for label in set(values.values())}
    ranks = dict(
        Item.objects.filter(project=project, is_gold=False).values_list("pk", "serve_rank")
    )
    for item_id, label in values.items():
        assert ranks[item_id] == pytest.approx(len(values) / counts[label])


def test_serving_order_set_refuses_an_unknown_order(project):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as error:
        serving_order_set(project=project, serving_order="random")
    assert "serving_order" in error.value.message_dict
    project.refresh_from_db()
    assert project.serving_order == "default"


@pytest.mark.parametrize(
    ("suggestions", "order", "checked"),
    [(False, "default", False), (True, "default", True), (False, "uncertainty", True)],
)
def test_a_recompute_checks_for_retraining_only_where_pre_labels_are_used(
    monkeypatch, suggestions, order, checked
):
    import quality.model
    from quality.services.recompute import quality_recompute
    from tests.annotation.factories import ProjectFactory

    project = ProjectFactory(suggestions_enabled=suggestions, serving_order=order)
    calls = []
    monkeypatch.setattr(
        quality.model, "model_retrain_if_due", lambda project: calls.append(project)
    )

    quality_recompute(project=project)

    assert calls == ([project] if checked else [])
