"""Fill a scratch database for the backup test: run as a script with DATABASE_URL and
ASSAY_MEDIA_ROOT pointing at the scratch database and storage.

Creates one project with items, annotations from three annotators, an uploaded file in storage
and two built releases, and prints nothing but a JSON summary.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def seed() -> dict[str, object]:
    """Create the data; return the ids and release paths the test checks."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from quality.releases import release_build
    from tests.annotation.factories import (
        AnnotationFactory,
        ItemFactory,
        ProjectFactory,
        UserFactory,
    )
    from tests.quality.factories import make_release

    owner = UserFactory(username="backup-owner")
    project = ProjectFactory(created_by=owner, name="Backed up")
    annotators = [UserFactory(username=f"backup-annotator{i}") for i in range(3)]
    items = ItemFactory.create_batch(6, project=project)
    for index, item in enumerate(items[:5]):
        for position, author in enumerate(annotators):
            label = "negative" if (index + position) % 3 == 0 else "positive"
            AnnotationFactory(item=item, author=author, value={"label": label})
    upload = default_storage.save("uploads/backup-test/photo.bin", ContentFile(b"\x89PNG fake"))
    releases = [release_build(release=make_release(project, owner)) for _ in range(2)]
    if any(release.status != "ready" for release in releases):
        raise SystemExit(f"release build failed: {[r.error for r in releases]}")
    return {
        "project_id": project.pk,
        "upload": upload,
        "release_files": sorted(f.path for r in releases for f in r.files.all()),
    }


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    import django

    django.setup()
    sys.stdout.write(json.dumps(seed()) + "\n")
