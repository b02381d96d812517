"""Partial indexes for the claim query's active-learning order (crowd.services.claims).

With serving_order "uncertainty" or "rare_first" the claim walks open regular items by
(priority, serve_rank descending, slots_taken descending, id), with priority descending for
reliable workers: one index per direction, like item_claimable_idx and its doubtful twin.

Database only: the indexes are not (yet) declared in annotation.models.Item.Meta, so the
migration state does not record them and `makemigrations --check` stays clean.
"""

from django.db import migrations, models
from django.db.models import F, Q

CONDITION = Q(is_gold=False) & Q(slots_taken__lt=F("target"))


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0007_predictions_and_serving"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AddIndex(
                    model_name="item",
                    index=models.Index(
                        F("project"),
                        F("priority"),
                        F("serve_rank").desc(),
                        F("slots_taken").desc(),
                        F("id"),
                        name="item_claim_ranked_idx",
                        condition=CONDITION,
                    ),
                ),
                migrations.AddIndex(
                    model_name="item",
                    index=models.Index(
                        F("project"),
                        F("priority").desc(),
                        F("serve_rank").desc(),
                        F("slots_taken").desc(),
                        F("id"),
                        name="item_claim_ranked_doubtful_idx",
                        condition=CONDITION,
                    ),
                ),
            ],
            state_operations=[],
        ),
    ]
