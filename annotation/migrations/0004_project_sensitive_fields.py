from __future__ import annotations

from django.db import migrations, models

import annotation.models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0003_item_claim_routing_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="project",
            name="sensitive_fields",
            field=models.JSONField(
                blank=True,
                default=list,
                validators=[annotation.models.sensitive_fields_validate],
            ),
        ),
    ]
