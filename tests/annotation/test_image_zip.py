"""Image zip imports: real zips of Pillow images, metadata, hostile entries, all-or-nothing."""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from annotation.imports import import_job_create, import_run, zips
from annotation.imports.parsing import data_hash
from annotation.models import ImportJob, Item
from annotation.task_types import task_types
from tests.annotation.test_imports import upload
from tests.annotation.test_imports_types import MultiLabel, Pairwise

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


def picture(kind: str = "PNG", size: tuple[int, int] = (4, 3), colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format=kind)
    return out.getvalue()


def make_zip(entries: dict[str, bytes | str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return out.getvalue()


def run_zip(project, owner, content: bytes) -> ImportJob:
    job = import_job_create(project=project, user=owner, uploaded_file=upload("pics.zip", content))
    return import_run(job=job)


def stored_images(media_root: Path, project) -> list[str]:
    folder = media_root / "items" / str(project.pk)
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def files_of(job: ImportJob) -> list[tuple]:
    return [(error.get("file"), error["line"], error["field"]) for error in job.errors]


# --- Happy paths -------------------------------------------------------------------------------


def test_a_zip_without_metadata_makes_one_item_per_image(project, owner, media_root):
    red, blue = picture("PNG", (4, 3), "red"), picture("JPEG", (8, 6), "blue")
    content = make_zip(
        {
            "cats/red.png": red,
            "blue.jpg": blue,
            "cats/": "",
            "__MACOSX/._red.png": "junk",
            ".DS_Store": "junk",
        }
    )

    job = run_zip(project, owner, content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert (job.format, job.created_count, job.duplicate_count) == ("zip", 2, 0)
    items = {item.data["name"]: item for item in Item.objects.filter(project=project)}
    red_sha = hashlib.sha256(red).hexdigest()
    assert items["cats/red.png"].data == {
        "image": f"items/{project.pk}/{red_sha}.png",
        "name": "cats/red.png",
        "width": 4,
        "height": 3,
    }
    assert items["blue.jpg"].data["image"].endswith(".jpg")
    assert (items["blue.jpg"].data["width"], items["blue.jpg"].data["height"]) == (8, 6)
    assert items["cats/red.png"].content_hash == data_hash(items["cats/red.png"].data)
    stored = media_root / items["cats/red.png"].data["image"]
    assert stored.read_bytes() == red


def test_the_same_picture_twice_is_stored_once_and_becomes_one_item(project, owner, media_root):
    red = picture()
    content = make_zip({"a.png": red, "b/a-copy.png": red, "c.webp": picture("WEBP")})

    job = run_zip(project, owner, content)
    again = run_zip(project, owner, content)

    assert (job.created_count, job.duplicate_count) == (2, 1), job.errors
    assert (again.created_count, again.duplicate_count) == (0, 3), again.errors
    assert len(stored_images(media_root, project)) == 2


def test_metadata_csv_names_images_and_carries_fields_and_gold(project, owner):
    content = make_zip(
        {
            "metadata.csv": "image,source,gold\nimg/1.png,camera,positive\n./2.gif,scan,\n",
            "img/1.png": picture(),
            "2.gif": picture("GIF", colour="green"),
        }
    )

    job = run_zip(project, owner, content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    first, second = Item.objects.filter(project=project).order_by("id")
    assert (first.data["source"], first.data["name"]) == ("camera", "img/1.png")
    assert (first.gold, first.is_gold) == ({"label": "positive"}, True)
    assert "gold" not in first.data
    assert second.data["image"].endswith(".gif")
    assert second.gold is None


def test_metadata_jsonl_with_an_answer_object_as_gold(project, owner, monkeypatch):
    monkeypatch.setitem(task_types(), "multi_label", MultiLabel())
    project.task_type = "multi_label"
    project.save(update_fields=["task_type"])
    metadata = '{"image": "x.png", "gold": {"labels": ["negative", "positive"]}}\n'
    content = make_zip({"metadata.jsonl": metadata, "x.png": picture()})

    job = run_zip(project, owner, content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    assert Item.objects.get(project=project).gold == {"labels": ["positive", "negative"]}


def test_pairwise_zip_pairs_images_through_metadata(project, owner, monkeypatch):
    monkeypatch.setitem(task_types(), "pairwise", Pairwise())
    project.task_type = "pairwise"
    project.save(update_fields=["task_type"])
    metadata = 'image_a,image_b,gold\nl.png,r.png,"{""choice"": ""B""}"\n'
    content = make_zip(
        {"metadata.csv": metadata, "l.png": picture(), "r.png": picture("PNG", colour="blue")}
    )

    job = run_zip(project, owner, content)

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    item = Item.objects.get(project=project)
    assert item.data["image_a"].startswith(f"items/{project.pk}/")
    assert (item.data["name_a"], item.data["name_b"]) == ("l.png", "r.png")
    assert item.gold == {"choice": "B"}


# --- Hostile and broken zips -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil.png", "/abs.png", "C:\\win.png", "a/../../b.png"])
def test_unsafe_entry_names_are_refused_by_name(project, owner, media_root, name):
    content = make_zip({"ok.png": picture(), name: picture()})

    job = run_zip(project, owner, content)

    assert job.status == ImportJob.Status.FAILED
    assert files_of(job) == [(name, None, None)]
    assert name in job.errors[0]["message"]
    assert Item.objects.count() == 0
    assert stored_images(media_root, project) == []


def test_non_image_and_corrupt_entries_are_refused(project, owner, media_root):
    broken = picture()[:-30]
    content = make_zip({"ok.png": picture(), "notes.txt": "hello", "broken.png": broken})

    job = run_zip(project, owner, content)

    assert job.status == ImportJob.Status.FAILED
    assert files_of(job) == [("notes.txt", None, None), ("broken.png", None, None)]
    assert "Not an image" in job.errors[0]["message"]
    assert "damaged" in job.errors[1]["message"]
    assert stored_images(media_root, project) == []


def test_a_bmp_is_not_accepted(project, owner):
    job = run_zip(project, owner, make_zip({"old.bmp": picture("BMP")}))

    assert files_of(job) == [("old.bmp", None, None)]


def test_a_zip_bomb_is_refused_on_declared_size(project, owner, monkeypatch):
    monkeypatch.setattr(zips, "MAX_TOTAL_BYTES", 10_000)
    content = make_zip({"a.png": picture(), "zeros.png": b"\0" * 50_000})  # compresses to ~100 B

    job = run_zip(project, owner, content)

    assert job.status == ImportJob.Status.FAILED
    assert "unpacks to" in job.errors[0]["message"]
    assert Item.objects.count() == 0


def test_an_entry_larger_than_declared_is_refused(project, owner):
    data = picture()
    content = bytearray(make_zip({"a.png": data}))
    # Lie in the central directory: declare fewer uncompressed bytes than the entry holds.
    central = content.rindex(b"PK\x01\x02")
    content[central + 24 : central + 28] = struct.pack("<I", len(data) - 10)

    job = run_zip(project, owner, bytes(content))

    assert job.status == ImportJob.Status.FAILED
    assert files_of(job) == [("a.png", None, None)]


def test_a_decompression_bomb_image_is_refused(project, owner):
    png = bytearray(picture("PNG", (1, 1)))
    # IHDR claims 100000 x 100000 pixels; the CRC is fixed so only the size is wrong.
    png[16:24] = struct.pack(">II", 100_000, 100_000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))

    job = run_zip(project, owner, make_zip({"bomb.png": bytes(png)}))

    assert job.status == ImportJob.Status.FAILED
    assert files_of(job) == [("bomb.png", None, None)]
    assert "pixels" in job.errors[0]["message"]


def test_too_many_entries_are_refused(project, owner, monkeypatch):
    monkeypatch.setattr(zips, "MAX_ENTRIES", 2)

    job = run_zip(project, owner, make_zip({f"{n}.png": picture() for n in range(3)}))

    assert job.status == ImportJob.Status.FAILED
    assert "more than 2 entries" in job.errors[0]["message"]


def test_metadata_errors_name_the_file_line_and_column(project, owner, media_root):
    metadata = "image,gold\na.png,positive\nmissing.png,\nb.png,meh\n"
    content = make_zip({"metadata.csv": metadata, "a.png": picture(), "b.png": picture("GIF")})

    job = run_zip(project, owner, content)

    assert job.status == ImportJob.Status.FAILED
    assert files_of(job) == [("metadata.csv", 3, "image"), ("metadata.csv", 4, "gold")]
    assert stored_images(media_root, project) == []


def test_images_no_metadata_row_names_are_refused(project, owner):
    metadata = '{"image": "a.png"}\n'
    content = make_zip({"metadata.jsonl": metadata, "a.png": picture(), "extra.png": picture()})

    job = run_zip(project, owner, content)

    assert files_of(job) == [("extra.png", None, None)]


def test_not_a_zip_fails_cleanly(project, owner):
    job = run_zip(project, owner, b"this is not a zip")

    assert job.status == ImportJob.Status.FAILED
    assert "Not a readable zip" in job.errors[0]["message"]


def test_a_zip_for_an_image_type_is_accepted_at_upload(project, owner):
    job = import_job_create(
        project=project, user=owner, uploaded_file=upload("p.zip", make_zip({"a.png": picture()}))
    )

    assert (job.format, job.status) == ("zip", ImportJob.Status.PENDING)
    with pytest.raises(ValidationError):
        import_job_create(project=project, user=owner, uploaded_file=upload("p.rar", b"x"))


# --- All or nothing ----------------------------------------------------------------------------


def test_a_failed_insert_deletes_every_image_it_stored(project, owner, media_root, monkeypatch):
    def failing_writer(project, items):
        raise RuntimeError("disk full")

    monkeypatch.setattr(zips, "_copy_writer", failing_writer)
    monkeypatch.setattr(zips, "_bulk_create_writer", failing_writer)
    content = make_zip({"a.png": picture(), "b.png": picture("PNG", colour="blue")})

    with pytest.raises(RuntimeError):
        run_zip(project, owner, content)

    job = ImportJob.objects.get(project=project)
    assert job.status == ImportJob.Status.FAILED
    assert Item.objects.count() == 0
    assert stored_images(media_root, project) == []


def test_images_stored_by_an_earlier_import_survive_a_failed_one(
    project, owner, media_root, monkeypatch
):
    first = run_zip(project, owner, make_zip({"a.png": picture()}))
    assert first.created_count == 1
    Item.objects.filter(project=project).delete()  # the file stays, the item goes
    kept = stored_images(media_root, project)

    monkeypatch.setattr(zips, "_copy_writer", lambda project, items: 1 / 0)
    monkeypatch.setattr(zips, "_bulk_create_writer", lambda project, items: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        run_zip(project, owner, make_zip({"a.png": picture(), "new.png": picture("GIF")}))

    assert stored_images(media_root, project) == kept


@pytest.mark.parametrize("key", ["boxes", "pairwise", "rating"])
def test_real_image_types_import_a_zip(project, owner, key):
    if key not in task_types():
        pytest.skip(f"no {key} module in this tree")
    project.task_type = key
    project.task_options = task_types()[key].options_clean({}, labels=project.labels)
    project.save(update_fields=["task_type", "task_options"])
    entries: dict[str, bytes | str] = {"l.png": picture(), "r.png": picture("PNG", colour="blue")}
    if key == "pairwise":
        entries["metadata.csv"] = 'image_a,image_b,gold\nl.png,r.png,"{""choice"": ""A""}"\n'
    elif key == "boxes":
        gold = '{"boxes": [{"x": 0, "y": 0, "w": 2, "h": 2, "label": "positive"}]}'
        entries["metadata.jsonl"] = f'{{"image": "l.png", "gold": {gold}}}\n{{"image": "r.png"}}\n'

    job = run_zip(project, owner, make_zip(entries))

    assert job.status == ImportJob.Status.SUCCEEDED, job.errors
    expected = 1 if key == "pairwise" else 2
    assert job.created_count == expected
    if key != "rating":
        assert Item.objects.filter(project=project, is_gold=True).count() == 1


# --- Through the API and the upload form -------------------------------------------------------


def test_the_api_import_endpoint_takes_a_zip(
    project, owner, client_for, celery_eager, django_capture_on_commit_callbacks
):
    upload_file = SimpleUploadedFile("pics.zip", make_zip({"a.png": picture()}))
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(owner).post(
            reverse("api:import-create", args=[project.pk]),
            {"file": upload_file},
            format="multipart",
        )

    assert response.status_code == 201, response.content
    job = ImportJob.objects.get(project=project)
    assert (job.format, job.status, job.created_count) == ("zip", "succeeded", 1)


def test_the_upload_form_takes_a_zip_and_the_failed_job_names_the_entry(
    client, project, owner, celery_eager, django_capture_on_commit_callbacks
):
    client.force_login(owner)
    upload_file = SimpleUploadedFile("pics.zip", make_zip({"a.png": picture(), "x.txt": "no"}))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("annotation:import-create", args=[project.pk]), {"file": upload_file})
    job = ImportJob.objects.get(project=project)

    page = client.get(reverse("annotation:import-detail", args=[job.pk])).content.decode()

    assert job.status == ImportJob.Status.FAILED
    assert '<th scope="col">File</th>' in page
    assert "<td>x.txt</td>" in page
    assert Item.objects.count() == 0
