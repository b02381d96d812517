from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("quality", "0004_quality_approval"),
    ]

    operations = [
        migrations.AddField(
            model_name="release",
            name="include_identities",
            field=models.BooleanField(default=False),
        ),
    ]
