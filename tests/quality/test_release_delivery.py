"""Release downloads: HTTP ranges, 416, cached verification, the signed-redirect branch and the
ASSAY_STORAGE settings switch."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.files.storage import FileSystemStorage, default_storage
from django.urls import reverse

from quality.releases import release_build
from quality.releases.ranges import ByteRange, RangeNotSatisfiableError, byte_range_parse
from tests.annotation.factories import AnnotationFactory, ItemFactory, UserFactory
from tests.quality.factories import make_release

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]
ROOT = Path(__file__).resolve().parents[2]


class SignedUrlStorage(FileSystemStorage):
    """Test double for an object store: local files, but `url()` signs like S3 presigning
    (an expiry and an HMAC of path, expiry and response parameters)."""

    def url(self, name, parameters=None, expire=None, http_method=None):
        parameters = parameters or {}
        payload = json.dumps([name, expire, parameters], sort_keys=True).encode()
        signature = hashlib.sha256(b"bucket-key" + payload).hexdigest()
        query = "&".join(f"{k}={v}" for k, v in sorted(parameters.items()))
        return f"https://bucket.example/{name}?X-Expires={expire}&{query}&X-Signature={signature}"


@pytest.fixture
def ready(project, owner):
    annotators = [UserFactory(username=f"ann{i}") for i in range(3)]
    for n in range(40):
        item = ItemFactory(project=project, data={"text": f"review number {n} " * 3})
        for author in annotators:
            AnnotationFactory(item=item, author=author, value={"label": "positive"})
    return release_build(release=make_release(project, owner))


def stored(release, fmt="jsonl") -> bytes:
    with default_storage.open(release.files.get(format=fmt).path, "rb") as handle:
        return handle.read()


def download(client, release, fmt="jsonl", **headers):
    return client.get(reverse("releases:release-download", args=[release.pk, fmt]), **headers)


def body(response) -> bytes:
    return b"".join(response.streaming_content)


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", ByteRange(0, 9, 100)),
        ("bytes=90-", ByteRange(90, 99, 100)),
        ("bytes=-10", ByteRange(90, 99, 100)),
        ("bytes=-500", ByteRange(0, 99, 100)),
        ("bytes=95-500", ByteRange(95, 99, 100)),
        ("bytes=0-1,5-6", None),  # several ranges: whole file
        ("items=0-5", None),
        ("bytes=9-3", None),
        ("bytes=-", None),
        (None, None),
    ],
)
def test_byte_range_parse(header, expected):
    assert byte_range_parse(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=500-600", "bytes=-0"])
def test_byte_range_parse_unsatisfiable(header):
    with pytest.raises(RangeNotSatisfiableError):
        byte_range_parse(header, 100)


# --- streamed downloads --------------------------------------------------------------------------


def test_whole_download_advertises_ranges(client, owner, ready):
    client.force_login(owner)
    response = download(client, ready)

    content = stored(ready)
    assert response.status_code == 200
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Length"] == str(len(content))
    assert body(response) == content


@pytest.mark.parametrize(
    ("header", "part"),
    [
        ("bytes=10-19", slice(10, 20)),
        ("bytes=100-", slice(100, None)),
        ("bytes=-7", slice(-7, None)),
    ],
)
def test_ranged_download_page_and_api(client, client_for, owner, ready, header, part):
    client.force_login(owner)
    content = stored(ready)
    page = download(client, ready, HTTP_RANGE=header)
    api = client_for(owner).get(
        reverse("api:release-download", args=[ready.pk]) + "?format=jsonl", HTTP_RANGE=header
    )

    for response in (page, api):
        assert response.status_code == 206
        expected = content[part]
        start = part.start % len(content)
        assert (
            response["Content-Range"] == f"bytes {start}-{start + len(expected) - 1}/{len(content)}"
        )
        assert response["Content-Length"] == str(len(expected))
        assert response["Accept-Ranges"] == "bytes"
        assert "attachment" in response["Content-Disposition"]
        assert body(response) == expected


def test_ranges_reassemble_the_file(client, owner, ready):
    client.force_login(owner)
    content = stored(ready)
    parts, start = [], 0
    while start < len(content):
        response = download(client, ready, HTTP_RANGE=f"bytes={start}-{start + 999}")
        assert response.status_code == 206
        parts.append(body(response))
        start += 1000
    assert b"".join(parts) == content


def test_unsatisfiable_range_is_416(client, client_for, owner, ready):
    client.force_login(owner)
    size = len(stored(ready))
    page = download(client, ready, HTTP_RANGE=f"bytes={size}-")
    api = client_for(owner).get(
        reverse("api:release-download", args=[ready.pk]) + "?format=jsonl",
        HTTP_RANGE=f"bytes={size + 10}-{size + 20}",
    )
    for response in (page, api):
        assert response.status_code == 416
        assert response["Content-Range"] == f"bytes */{size}"


def test_if_range_with_another_etag_gets_the_whole_file(client, owner, ready):
    client.force_login(owner)
    content = stored(ready)
    sha = hashlib.sha256(content).hexdigest()

    stale = download(client, ready, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE='"0000"')
    fresh = download(client, ready, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE=f'"{sha}"')

    assert stale.status_code == 200
    assert body(stale) == content
    assert fresh.status_code == 206
    assert body(fresh) == content[:10]


def test_ranged_request_verifies_the_checksum_first(client, owner, ready):
    client.force_login(owner)
    path = ready.files.get(format="csv").path
    tampered = stored(ready, "csv").replace(b"positive", b"negative")
    default_storage.delete(path)
    default_storage.save(path, io.BytesIO(tampered))

    response = download(client, ready, "csv", HTTP_RANGE="bytes=0-9")

    assert response.status_code == 500
    assert b"checksum" in response.content


def test_ranged_requests_reuse_a_cached_verification(client, owner, ready, monkeypatch):
    from quality.releases import delivery

    client.force_login(owner)
    calls = []
    real = delivery._verify
    monkeypatch.setattr(
        delivery,
        "_verify",
        lambda handle, expected: calls.append(1) or real(handle, expected=expected),
    )

    for start in (0, 10, 20):
        assert download(client, ready, HTTP_RANGE=f"bytes={start}-{start + 9}").status_code == 206
    assert len(calls) == 1
    assert download(client, ready).status_code == 200  # whole downloads always verify
    assert len(calls) == 2


def test_file_rewritten_in_place_is_verified_again(client, owner, ready):
    client.force_login(owner)
    assert download(client, ready, HTTP_RANGE="bytes=0-9").status_code == 206
    path = Path(default_storage.path(ready.files.get(format="jsonl").path))
    content = path.read_bytes()
    path.write_bytes(content.replace(b"positive", b"negative"))  # same size, new mtime
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))

    response = download(client, ready, HTTP_RANGE="bytes=0-9")

    assert response.status_code == 500


# --- signed redirect -----------------------------------------------------------------------------


@pytest.fixture
def object_storage(settings, media_root):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": f"{__name__}.SignedUrlStorage",
            "OPTIONS": {"location": str(media_root)},
        },
    }
    settings.ASSAY_RELEASE_SIGNED_REDIRECT = True
    settings.ASSAY_RELEASE_URL_EXPIRY_SECONDS = 120


def test_object_storage_download_redirects_to_a_signed_url(
    client, client_for, owner, ready, object_storage
):
    client.force_login(owner)
    record = ready.files.get(format="csv")

    page = download(client, ready, "csv")
    api = client_for(owner).get(reverse("api:release-download", args=[ready.pk]) + "?format=csv")

    for response in (page, api):
        assert response.status_code == 302
        url = urlsplit(response["Location"])
        query = parse_qs(url.query)
        assert url.netloc == "bucket.example"
        assert url.path == f"/{record.path}"
        assert query["X-Expires"] == ["120"]
        assert "X-Signature" in query
        assert query["ResponseContentDisposition"][0].startswith("attachment;")
        assert "reviews-v1.csv" in query["ResponseContentDisposition"][0]
        assert response["Cache-Control"] == "private, no-store"


def test_redirect_only_after_access_and_record_checks(client, owner, ready, object_storage):
    outsider = UserFactory(username="stranger")
    client.force_login(outsider)
    assert download(client, ready).status_code == 404

    client.force_login(owner)
    record = ready.files.get(format="jsonl")
    record.sha256 = "0" * 64
    record.save()
    assert download(client, ready).status_code == 500

    default_storage.delete(ready.files.get(format="csv").path)
    assert download(client, ready, "csv").status_code == 500


# --- settings switch -----------------------------------------------------------------------------

SWITCH_SCRIPT = """
import json, django
django.setup()
from django.conf import settings
from django.core.files.storage import default_storage
signed = {"expire": 90} if settings.ASSAY_STORAGE == "s3" else {}
url = default_storage.url("releases/1/v1/data.jsonl", **signed)
cls = type(default_storage._wrapped)
print(json.dumps({
    "backend": settings.STORAGES["default"]["BACKEND"],
    "class": f"{cls.__module__}.{cls.__name__}",
    "redirect": settings.ASSAY_RELEASE_SIGNED_REDIRECT,
    "url": url,
}))
"""


def _settings_with(env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ASSAY_", "AWS_"))}
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings.local", REDIS_URL="")
    result = subprocess.run(
        [sys.executable, "-c", SWITCH_SCRIPT],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_settings_switch_to_s3_gives_presigned_urls():
    figures = _settings_with(
        {
            "ASSAY_STORAGE": "s3",
            "AWS_STORAGE_BUCKET_NAME": "assay-releases",
            "AWS_S3_ENDPOINT_URL": "https://objects.example.net",
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "secret-example",
            "AWS_S3_REGION_NAME": "eu-west-1",
        }
    )

    url = urlsplit(figures["url"])
    query = parse_qs(url.query)
    assert figures["class"] == "storages.backends.s3.S3Storage"
    assert figures["redirect"] is True
    assert url.netloc == "objects.example.net"
    assert url.path == "/assay-releases/releases/1/v1/data.jsonl"
    assert query["X-Amz-Expires"] == ["90"]
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")
    assert "X-Amz-Signature" in query


def test_settings_default_is_the_filesystem():
    figures = _settings_with({})

    assert figures["class"] == "django.core.files.storage.filesystem.FileSystemStorage"
    assert figures["redirect"] is False


def test_settings_refuse_an_unknown_storage():
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ASSAY_", "AWS_"))}
    clean.update(ASSAY_STORAGE="ftp", DJANGO_SETTINGS_MODULE="config.settings.local")
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ASSAY_STORAGE must be 'filesystem' or 's3'" in result.stderr
