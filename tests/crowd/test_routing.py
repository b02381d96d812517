"""What the quality engine steers: adaptive gold, retired gold, routing of doubtful items,
standings and skills, and the item upkeep services (targets, priorities, gold)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from annotation.models import Item
from annotation.services import (
    gold_items_retire,
    item_priorities_set,
    item_promote_to_gold,
    item_targets_raise,
)
from crowd.models import WorkerSkill, WorkerStanding
from crowd.services import (
    assignment_claim_next,
    assignment_submit,
    worker_skills_set,
    worker_standings_set,
)
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = pytest.mark.django_db


def label_all(worker, project) -> list[Item]:
    """Claim and answer until nothing is left; the items in the order they were served."""
    served = []
    while (assignment := assignment_claim_next(worker=worker, project=project)) is not None:
        served.append(Item.objects.get(pk=assignment.item_id))
        assignment_submit(
            assignment=assignment, worker=worker, value={"label": "positive"}, duration_ms=5
        )
    return served


@pytest.fixture
def mixed(owner):
    """A project with gold at a high project ratio, 4 gold and 6 regular items."""
    project = ProjectFactory(created_by=owner, gold_ratio=0.5)
    gold = ItemFactory.create_batch(4, project=project, gold={"label": "positive"})
    regular = ItemFactory.create_batch(6, project=project)
    return project, gold, regular


# --- adaptive gold ---------------------------------------------------------------------------


def test_a_gold_rate_of_one_serves_only_gold_while_regular_work_is_left(mixed):
    project, gold, regular = mixed
    worker = make_annotator(project)
    worker_standings_set(project=project, standings={worker.pk: (1.0, False)})

    served = label_all(worker, project)

    assert [item.is_gold for item in served] == [True] * 4 + [False] * 6
    assert {item.pk for item in served} == {i.pk for i in gold + regular}


def test_a_gold_rate_of_zero_never_serves_gold(mixed):
    project, _gold, regular = mixed
    worker = make_annotator(project)
    worker_standings_set(project=project, standings={worker.pk: (0.0, False)})

    served = label_all(worker, project)

    assert [item.pk for item in served] == [i.pk for i in regular]


def test_without_a_rate_the_project_gold_ratio_applies(mixed, monkeypatch):
    project, gold, _regular = mixed
    worker, other = make_annotator(project), make_annotator(project)
    worker_standings_set(project=project, standings={worker.pk: (None, True)})
    monkeypatch.setattr("crowd.services.claims.random.random", lambda: 0.49)  # below the 0.5 ratio

    first = assignment_claim_next(worker=worker, project=project)
    second = assignment_claim_next(worker=other, project=project)

    assert Item.objects.get(pk=first.item_id).is_gold
    assert Item.objects.get(pk=second.item_id).is_gold


def test_retired_gold_is_never_served(mixed):
    project, gold, regular = mixed
    assert gold_items_retire(project=project, item_ids=[gold[0].pk, gold[2].pk]) == 2
    worker = make_annotator(project)
    worker_standings_set(project=project, standings={worker.pk: (1.0, False)})

    served = label_all(worker, project)

    assert [item.pk for item in served] == [gold[1].pk, gold[3].pk] + [i.pk for i in regular]


# --- routing ---------------------------------------------------------------------------------


@pytest.fixture
def doubtful(owner):
    """Two plain items, one of them nearly complete, and two doubtful ones (priority 1)."""
    project = ProjectFactory(created_by=owner, overlap=3)
    plain = ItemFactory.create_batch(2, project=project)
    unsure = ItemFactory.create_batch(2, project=project)
    Item.objects.filter(pk=plain[1].pk).update(slots_taken=2)  # fullest plain item
    assert item_priorities_set(project=project, high=[i.pk for i in unsure]) == 2
    return project, plain, unsure


def test_reliable_workers_get_doubtful_items_first(doubtful):
    project, plain, unsure = doubtful
    reliable = make_annotator(project, "reliable")
    worker_standings_set(project=project, standings={reliable.pk: (0.0, True)})

    served = label_all(reliable, project)

    assert [item.pk for item in served] == [unsure[0].pk, unsure[1].pk, plain[1].pk, plain[0].pk]


def test_other_workers_get_doubtful_items_only_when_nothing_else_is_left(doubtful):
    project, plain, unsure = doubtful
    newcomer, unsure_worker = make_annotator(project, "new"), make_annotator(project, "doubt")
    worker_standings_set(project=project, standings={unsure_worker.pk: (0.0, False)})

    served = {w.username: label_all(w, project) for w in (newcomer, unsure_worker)}

    order = [plain[1].pk, plain[0].pk, unsure[0].pk, unsure[1].pk]
    assert [item.pk for item in served["new"]] == order
    assert [item.pk for item in served["doubt"]] == [plain[0].pk, unsure[0].pk, unsure[1].pk]


def test_raised_targets_reopen_items_for_more_annotators(owner):
    project = ProjectFactory(created_by=owner, overlap=1)
    done, other = ItemFactory.create_batch(2, project=project)
    first = make_annotator(project)
    label_all(first, project)
    second = make_annotator(project)
    assert assignment_claim_next(worker=second, project=project) is None

    changed = item_targets_raise(project=project, targets={done.pk: 3, other.pk: 1})

    assert changed == 1
    assert Item.objects.get(pk=done.pk).target == 3
    assert assignment_claim_next(worker=second, project=project).item_id == done.pk


# --- upkeep services -------------------------------------------------------------------------


def test_standings_are_upserted_in_one_statement(project, django_assert_num_queries):
    workers = [UserFactory() for _ in range(5)]
    worker_standings_set(project=project, standings={w.pk: (0.5, False) for w in workers})

    with django_assert_num_queries(1):
        worker_standings_set(
            project=project,
            standings={workers[0].pk: (None, True), workers[1].pk: (0.05, True)},
        )

    stored = dict(
        WorkerStanding.objects.filter(project=project).values_list("worker_id", "gold_rate")
    )
    assert stored == {workers[0].pk: None, workers[1].pk: 0.05} | {w.pk: 0.5 for w in workers[2:]}
    assert set(
        WorkerStanding.objects.filter(reliable=True).values_list("worker_id", flat=True)
    ) == {
        workers[0].pk,
        workers[1].pk,
    }
    with pytest.raises(ValidationError):
        worker_standings_set(project=project, standings={workers[0].pk: (1.5, True)})


def test_skills_are_upserted_per_worker_and_name(db, django_assert_num_queries):
    ann, bob = UserFactory(username="ann"), UserFactory(username="bob")
    worker_skills_set(name="sentiment", scores={ann.pk: (40.0, 3)})
    worker_skills_set(name="toxicity", scores={ann.pk: (90.0, 10)})

    with django_assert_num_queries(1):
        worker_skills_set(name="sentiment", scores={ann.pk: (75.5, 20), bob.pk: (10.0, 1)})

    rows = set(WorkerSkill.objects.values_list("worker__username", "name", "score", "evidence"))
    assert rows == {
        ("ann", "sentiment", 75.5, 20),
        ("ann", "toxicity", 90.0, 10),
        ("bob", "sentiment", 10.0, 1),
    }
    with pytest.raises(ValidationError):
        worker_skills_set(name="sentiment", scores={bob.pk: (101.0, 1)})


def test_targets_are_never_lowered_and_gold_or_foreign_items_are_untouched(project, owner):
    regular = ItemFactory(project=project)  # target 3
    gold = ItemFactory(project=project, gold={"label": "positive"})
    foreign = ItemFactory(project=ProjectFactory(created_by=owner))

    changed = item_targets_raise(
        project=project, targets={regular.pk: 2, gold.pk: 9, foreign.pk: 9}
    )

    assert changed == 0
    assert [Item.objects.get(pk=i.pk).target for i in (regular, gold, foreign)] == [3, 3, 3]
    assert item_targets_raise(project=project, targets={regular.pk: 5}) == 1
    with pytest.raises(ValidationError):
        item_targets_raise(project=project, targets={regular.pk: 0})


def test_priorities_are_written_only_where_they_change(project, owner):
    items = ItemFactory.create_batch(4, project=project)
    foreign = ItemFactory(project=ProjectFactory(created_by=owner))
    ids = [i.pk for i in items]

    assert item_priorities_set(project=project, high=[ids[0], ids[1], foreign.pk]) == 2
    assert item_priorities_set(project=project, high=[ids[0], ids[1]]) == 0
    assert item_priorities_set(project=project, high=[ids[1], ids[2]]) == 2

    priorities = dict(Item.objects.values_list("pk", "priority"))
    assert [priorities[pk] for pk in ids] == [0, 1, 1, 0]
    assert priorities[foreign.pk] == 0


def test_gold_retirement_touches_only_live_gold_of_the_project(project):
    gold = ItemFactory.create_batch(2, project=project, gold={"label": "positive"})
    regular = ItemFactory(project=project)

    assert gold_items_retire(project=project, item_ids=[gold[0].pk, regular.pk]) == 1
    assert gold_items_retire(project=project, item_ids=[gold[0].pk]) == 0

    assert list(Item.objects.filter(gold_retired=True).values_list("pk", flat=True)) == [gold[0].pk]


def test_promoting_an_item_to_gold_validates_the_label(project, worker):
    item = ItemFactory(project=project)

    with pytest.raises(ValidationError) as error:
        item_promote_to_gold(item=item, label="maybe")
    assert "label" in error.value.message_dict
    assert Item.objects.get(pk=item.pk).is_gold is False

    promoted = item_promote_to_gold(item=item, label="negative")

    stored = Item.objects.get(pk=item.pk)
    assert (promoted.is_gold, stored.is_gold, stored.gold) == (True, True, {"label": "negative"})
    worker_standings_set(project=project, standings={worker.pk: (1.0, False)})
    ItemFactory(project=project)
    assert assignment_claim_next(worker=worker, project=project).item_id == item.pk
