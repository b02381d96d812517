from __future__ import annotations

import hashlib

import factory
from django.contrib.auth import get_user_model

from annotation.models import Annotation, Item, Project, ProjectMember

LABELS = [{"value": "positive", "hotkey": "1"}, {"value": "negative", "hotkey": "2"}]


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")

    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.set_password(extracted or "pass-word-123")
        if create:
            self.save(update_fields=["password"])


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Project {n}")
    instructions = "Label the **sentiment** of each review."
    labels = factory.LazyFunction(lambda: [dict(label) for label in LABELS])
    overlap = 3
    gold_ratio = 0.0
    created_by = factory.SubFactory(UserFactory)

    @factory.post_generation
    def owner_member(self, create, extracted, **kwargs):
        if create:
            ProjectMember.objects.get_or_create(
                project=self, user=self.created_by, defaults={"role": ProjectMember.Role.OWNER}
            )


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item

    project = factory.SubFactory(ProjectFactory)
    data = factory.Sequence(lambda n: {"text": f"Item text number {n}"})
    content_hash = factory.LazyAttribute(lambda item: _hash(item.data.get("text", "")))
    gold = None
    is_gold = factory.LazyAttribute(lambda item: item.gold is not None)
    target = factory.LazyAttribute(lambda item: item.project.overlap)


class AnnotationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Annotation

    item = factory.SubFactory(ItemFactory)
    project = factory.LazyAttribute(lambda a: a.item.project)
    author = factory.SubFactory(UserFactory)
    value = factory.LazyFunction(lambda: {"label": "positive"})
    duration_ms = 1500
