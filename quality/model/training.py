"""Training the built-in model: TF-IDF and logistic regression on a project's vetted labels.

Vetted labels are the consensus of regular items the quality engine is confident about or an
expert decided (ItemScore state confident or reviewed), plus the answers of gold items. Items
are split 80/20 into training and validation by a hash of the project and item ids (a fixed
split that says nothing about labels). The fitted pipeline is stored in default storage and
only ever loaded back from there.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import joblib
import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MultiLabelBinarizer

from annotation.models import Item, Project
from core.audit import audit_record
from core.exceptions import ApplicationError
from quality.models import ItemScore, ModelVersion

logger = logging.getLogger(__name__)

MODEL_NAME = "assay-tfidf-lr"
SUPPORTED_TYPES = ("single_label", "multi_label")
MIN_VETTED = 30
# Retrain once vetted labels grew by this share or this many since the last version.
RETRAIN_GROWTH_SHARE = 0.2
RETRAIN_GROWTH_COUNT = 50
# A version still "training" after this long is taken as lost (a worker died mid-run).
TRAINING_STALE_SECONDS = 3600
VALIDATION_BUCKETS = 5  # one bucket in five is held out: an 80/20 split
VETTED_STATES = (ItemScore.State.CONFIDENT, ItemScore.State.REVIEWED)


@dataclass(frozen=True)
class Example:
    """One vetted item: its text and its labels (one for single label, a set for multi-label)."""

    item_id: int
    text: str
    labels: tuple[str, ...]


class ModelNotTrainableError(ApplicationError):
    """The project cannot train a model (type, media or too few vetted labels)."""


def model_supported(*, project: Project) -> bool:
    """Whether the built-in model applies to the project (text single- or multi-label)."""
    return project.task_type in SUPPORTED_TYPES


def is_validation(*, project_id: int, item_id: int) -> bool:
    """Whether the item is held out for validation: a fixed 20% bucket by a hash of the ids."""
    digest = hashlib.sha256(f"assay-model:{project_id}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % VALIDATION_BUCKETS == 0


def _vetted_filter() -> Q:
    regular = Q(is_gold=False, score__state__in=VETTED_STATES)
    gold = Q(is_gold=True, gold__isnull=False)
    return (regular | gold) & Q(data__has_key="text")


def vetted_count(*, project: Project) -> int:
    """How many text items of the project have a vetted label (one query)."""
    return Item.objects.filter(_vetted_filter(), project_id=project.pk).count()


def _labels_of(answer: Any, *, multi: bool, allowed: set[str]) -> tuple[str, ...] | None:
    """The labels of a stored answer (None when it is not a usable answer of this project)."""
    if not isinstance(answer, dict):
        return None
    if multi:
        labels = answer.get("labels")
        if not isinstance(labels, list) or not all(label in allowed for label in labels):
            return None
        return tuple(labels)
    label = answer.get("label")
    return (label,) if isinstance(label, str) and label in allowed else None


def vetted_examples(*, project: Project) -> list[Example]:
    """The project's vetted text items with their labels, in item order."""
    multi = project.task_type == "multi_label"
    allowed = set(project.label_values)
    rows = (
        Item.objects.filter(_vetted_filter(), project_id=project.pk)
        .order_by("pk")
        .values_list("pk", "data", "is_gold", "gold", "score__label", "score__value")
    )
    examples = []
    for item_id, data, is_gold, gold, score_label, score_value in rows:
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            continue
        if is_gold:
            labels = _labels_of(gold, multi=multi, allowed=allowed)
        elif multi:
            labels = _labels_of(score_value, multi=True, allowed=allowed)
        else:
            labels = _labels_of({"label": score_label}, multi=False, allowed=allowed)
        if labels is not None:
            examples.append(Example(item_id=item_id, text=text, labels=labels))
    return examples


def pipeline_build(*, multi: bool) -> Pipeline:
    """An unfitted TF-IDF + logistic regression pipeline (one-vs-rest for multi-label)."""
    classifier: Any = LogisticRegression(max_iter=1000, C=10.0)
    if multi:
        classifier = OneVsRestClassifier(classifier)
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
            ("classifier", classifier),
        ]
    )


@dataclass
class Fitted:
    """A fitted pipeline and its validation figures."""

    pipeline: Pipeline
    classes: list[str]
    multi: bool
    train_count: int
    validation_count: int
    accuracy: float | None
    macro_f1: float | None


def model_fit(
    *,
    texts: Sequence[str],
    labels: Sequence[Sequence[str]],
    validation: Sequence[bool],
    classes: Sequence[str],
    multi: bool,
    allow_none: bool = True,
) -> Fitted:
    """Fit on the rows not in `validation` and score on the others (accuracy: exact match of
    the label set for multi-label; macro F1 over labels). Raises ModelNotTrainableError when
    the training rows hold fewer than two classes."""
    held = np.asarray(validation, dtype=bool)
    train_idx, valid_idx = np.flatnonzero(~held), np.flatnonzero(held)
    train_texts = [texts[i] for i in train_idx]
    if multi:
        binarizer = MultiLabelBinarizer(classes=list(classes))
        y = binarizer.fit_transform([list(row) for row in labels])
        if not y[train_idx].any(axis=0).any() or y[train_idx].all(axis=0).all():
            raise ModelNotTrainableError("The training labels do not vary.", code="one_class")
    else:
        y = np.asarray([row[0] for row in labels], dtype=object)
        if len(set(y[train_idx].tolist())) < 2:
            raise ModelNotTrainableError(
                "The training items hold fewer than two labels.", code="one_class"
            )
    pipeline = pipeline_build(multi=multi)
    pipeline.fit(train_texts, y[train_idx])
    accuracy = macro_f1 = None
    if valid_idx.size:
        proba = predict_proba(pipeline, [texts[i] for i in valid_idx])
        fitted_order = list(classes) if multi else [str(c) for c in pipeline.classes_]
        predicted = labels_from_proba(proba, fitted_order, multi=multi, allow_none=allow_none)
        truth = y[valid_idx]
        if multi:
            predicted = binarizer.transform([list(row) for row in predicted])
        else:
            predicted = np.asarray([row[0] for row in predicted], dtype=object)
        accuracy = float(accuracy_score(truth, predicted))
        macro_f1 = float(f1_score(truth, predicted, average="macro", zero_division=0))
    fitted_classes = list(classes) if multi else [str(c) for c in pipeline.classes_]
    return Fitted(
        pipeline=pipeline,
        classes=fitted_classes,
        multi=multi,
        train_count=int(train_idx.size),
        validation_count=int(valid_idx.size),
        accuracy=accuracy,
        macro_f1=macro_f1,
    )


def predict_proba(pipeline: Pipeline, texts: Sequence[str]) -> np.ndarray:
    """Per text, the probability of each class (single label: they sum to 1; multi-label: each
    label's own probability), columns in the fitted class order."""
    return np.asarray(pipeline.predict_proba(list(texts)), dtype=np.float64)


def labels_from_proba(
    proba: np.ndarray, classes: Sequence[str], *, multi: bool, allow_none: bool = True
) -> list[tuple[str, ...]]:
    """The predicted labels per row: the most probable class, or (multi-label) every label
    above 0.5, the single most probable one when none is and an empty answer is not allowed."""
    result: list[tuple[str, ...]] = []
    for row in proba:
        if not multi:
            result.append((classes[int(np.argmax(row))],))
            continue
        picked = tuple(classes[j] for j in np.flatnonzero(row > 0.5))
        if not picked and not allow_none and row.size:
            picked = (classes[int(np.argmax(row))],)
        result.append(picked)
    return result


def confidence_from_proba(proba: np.ndarray, *, multi: bool) -> np.ndarray:
    """Per row, how sure the model is of its answer: the top class's probability, or for
    multi-label the probability of the predicted label set (labels taken as independent)."""
    if proba.size == 0:
        return np.zeros(proba.shape[0])
    if multi:
        return np.prod(np.maximum(proba, 1.0 - proba), axis=1)
    return proba.max(axis=1)


# --- versions -------------------------------------------------------------------------------


def artifact_path(*, project_id: int, version: int) -> str:
    """Where a version's fitted pipeline lives in default storage."""
    return f"models/project-{project_id}/v{version}.joblib"


def artifact_save(*, fitted: Fitted, path: str) -> str:
    """Store the fitted pipeline and its classes; returns the storage path used."""
    buffer = io.BytesIO()
    joblib.dump(
        {"pipeline": fitted.pipeline, "classes": fitted.classes, "multi": fitted.multi}, buffer
    )
    if default_storage.exists(path):
        default_storage.delete(path)
    return default_storage.save(path, ContentFile(buffer.getvalue()))


def artifact_load(*, version: ModelVersion) -> dict[str, Any]:
    """A version's stored pipeline (only our own storage path is ever loaded)."""
    if not version.artifact or version.status != ModelVersion.Status.READY:
        raise ModelNotTrainableError("This model version has no stored model.", code="no_model")
    expected = artifact_path(project_id=version.project_id, version=version.version)
    if version.artifact != expected:
        raise ModelNotTrainableError("Unexpected model path.", code="bad_artifact")
    with default_storage.open(version.artifact, "rb") as handle:
        return joblib.load(handle)


def _version_start(*, project: Project) -> ModelVersion:
    """Create the next version row (status training)."""
    for _attempt in range(3):
        try:
            with transaction.atomic():
                latest = ModelVersion.objects.filter(project=project).aggregate(v=Max("version"))
                return ModelVersion.objects.create(project=project, version=(latest["v"] or 0) + 1)
        except IntegrityError:  # a concurrent run took that number: take the next one
            continue
    raise ModelNotTrainableError("Could not number the new model version.", code="conflict")


def model_train(*, project: Project) -> ModelVersion:
    """Train a new version on the project's vetted labels, predict every regular item and set
    their serve ranks. Raises ModelNotTrainableError (and records nothing) for an unsupported
    project or fewer than MIN_VETTED vetted labels; a failure while fitting is recorded on the
    version (status failed, with the error)."""
    from quality.model.predicting import model_predict_all  # predicting imports this module

    if not model_supported(project=project):
        raise ModelNotTrainableError(
            "The built-in model trains on single- and multi-label text projects only.",
            code="unsupported",
        )
    examples = vetted_examples(project=project)
    if len(examples) < MIN_VETTED:
        raise ModelNotTrainableError(
            f"The model needs at least {MIN_VETTED} vetted labels; the project has "
            f"{len(examples)}.",
            code="too_few_labels",
        )
    version = _version_start(project=project)
    try:
        fitted = model_fit(
            texts=[example.text for example in examples],
            labels=[example.labels for example in examples],
            validation=[
                is_validation(project_id=project.pk, item_id=example.item_id)
                for example in examples
            ],
            classes=project.label_values,
            multi=project.task_type == "multi_label",
            allow_none=bool(project.task_options.get("allow_none", False)),
        )
        version.artifact = artifact_save(
            fitted=fitted, path=artifact_path(project_id=project.pk, version=version.version)
        )
        version.train_count = fitted.train_count
        version.validation_count = fitted.validation_count
        version.validation_accuracy = fitted.accuracy
        version.details = {
            "vetted": len(examples),
            "macro_f1": fitted.macro_f1,
            "classes": fitted.classes,
            "model_name": MODEL_NAME,
        }
        version.status = ModelVersion.Status.READY
        version.trained_at = timezone.now()
        version.save()
        version.details["predicted"] = model_predict_all(project=project, version=version)
        ModelVersion.objects.filter(pk=version.pk).update(details=version.details)
    except ModelNotTrainableError as error:
        _version_fail(version=version, error=str(error), vetted=len(examples))
    except Exception as error:
        logger.exception("model training failed for project %s", project.pk)
        _version_fail(
            version=version, error=f"{type(error).__name__}: {error}", vetted=len(examples)
        )
    return version


def _version_fail(*, version: ModelVersion, error: str, vetted: int) -> None:
    version.status = ModelVersion.Status.FAILED
    version.error = error[:2000]
    version.details = {**version.details, "vetted": vetted}
    version.save(update_fields=["status", "error", "details"])


def _growth_needed(last_vetted: int) -> int:
    """How many more vetted labels make a retrain due: 20% more, or 50, whichever comes first."""
    return max(1, min(math.ceil(last_vetted * RETRAIN_GROWTH_SHARE), RETRAIN_GROWTH_COUNT))


def model_retrain_due(*, project: Project) -> bool:
    """Whether a (re)training is due: a supported project with at least MIN_VETTED vetted labels,
    no version training right now, and none yet or vetted labels grown enough since the last."""
    if not model_supported(project=project):
        return False
    versions = ModelVersion.objects.filter(project=project)
    stale = timezone.now() - timedelta(seconds=TRAINING_STALE_SECONDS)
    if versions.filter(status=ModelVersion.Status.TRAINING, created_at__gte=stale).exists():
        return False
    count = vetted_count(project=project)
    if count < MIN_VETTED:
        return False
    last = versions.exclude(status=ModelVersion.Status.TRAINING).order_by("-version").first()
    if last is None:
        return True
    last_vetted = int(last.details.get("vetted") or 0)
    return count - last_vetted >= _growth_needed(last_vetted)


def model_retrain_if_due(*, project: Project) -> bool:
    """Queue a training (after commit) when model_retrain_due says so; returns whether it did.
    Called after each quality recompute."""
    if not model_retrain_due(project=project):
        return False
    model_train_enqueue(project=project)
    return True


def model_train_enqueue(*, project: Project) -> None:
    """Queue the training task for the project once the current transaction commits."""
    from quality.model.tasks import model_train_task

    project_id = project.pk
    transaction.on_commit(lambda: model_train_task.delay(project_id))


def model_train_request(*, project: Project, actor: AbstractBaseUser | None = None) -> int:
    """An owner's "train now": check the project can train (ModelNotTrainableError saying why
    not) and queue a training after commit. Returns the number of vetted labels. Records a
    "model.train" audit event by `actor`."""
    if not model_supported(project=project):
        raise ModelNotTrainableError(
            "The built-in model trains on single- and multi-label text projects only.",
            code="unsupported",
        )
    count = vetted_count(project=project)
    if count < MIN_VETTED:
        raise ModelNotTrainableError(
            f"The model needs at least {MIN_VETTED} vetted labels; the project has {count}.",
            code="too_few_labels",
        )
    stale = timezone.now() - timedelta(seconds=TRAINING_STALE_SECONDS)
    training = ModelVersion.objects.filter(
        project=project, status=ModelVersion.Status.TRAINING, created_at__gte=stale
    )
    if training.exists():
        raise ModelNotTrainableError("A version is training already.", code="training")
    model_train_enqueue(project=project)
    audit_record(
        actor=actor, project=project, action="model.train", details={"vetted_labels": count}
    )
    return count
