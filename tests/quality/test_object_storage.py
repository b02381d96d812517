"""Release files on real object storage: django-storages' S3Storage against moto's S3 server.

moto's server (`python -m moto.server`) is a real S3-compatible HTTP endpoint, started here as a
subprocess on a local port. The storage options are the ones config/settings/base.py builds
from ASSAY_STORAGE=s3 and the AWS_* variables (read from a settings import in a subprocess), so
the build, the 302 to a presigned URL and the integrity checks all go through S3Storage and
HTTP, as in production. Skips when moto is not installed, except under CI=true.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.error import HTTPError

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from quality.releases import release_build
from tests.annotation.factories import AnnotationFactory, ItemFactory, UserFactory
from tests.quality.factories import make_release

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
PORTS = range(18200, 18250)  # this test's share of the ports given to the scaling work
START_TIMEOUT = 30  # seconds for moto's server to answer
ACCESS = {"AWS_ACCESS_KEY_ID": "assay-test", "AWS_SECRET_ACCESS_KEY": "assay-test-secret"}
REGION = "us-east-1"

STORAGE_SCRIPT = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps({"default": settings.STORAGES["default"],
                  "redirect": settings.ASSAY_RELEASE_SIGNED_REDIRECT}))
"""


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}: this test must run in CI.", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)  # noqa: S310 - our own local server
    except HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto's S3 server on a local port for this module; yields its endpoint URL."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError:
        _missing("moto[server] is not installed (pip install -e '.[dev]')")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(endpoint):
            assert server.poll() is None, "moto server exited at start-up"
            assert time.monotonic() < deadline, f"moto server silent after {START_TIMEOUT}s"
            time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def s3_settings(s3_endpoint):
    """The STORAGES entry config/settings/base.py builds for ASSAY_STORAGE=s3 at this endpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSAY_", "AWS_"))}
    env.update(
        ACCESS,
        ASSAY_STORAGE="s3",
        AWS_STORAGE_BUCKET_NAME="assay-releases",
        AWS_S3_ENDPOINT_URL=s3_endpoint,
        AWS_S3_REGION_NAME=REGION,
        ASSAY_RELEASE_URL_EXPIRY_SECONDS="120",
        DJANGO_SETTINGS_MODULE="config.settings.local",
        REDIS_URL="",
    )
    result = subprocess.run(
        [sys.executable, "-c", STORAGE_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def bucket(s3_endpoint, s3_settings, settings, request):
    """A fresh bucket, made the default storage (S3Storage) with signed-redirect downloads."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ACCESS["AWS_SECRET_ACCESS_KEY"],
    )
    name = f"assay-{request.node.name.replace('_', '-')[:40].lower()}"
    client.create_bucket(Bucket=name)
    storage = json.loads(json.dumps(s3_settings["default"]))
    storage["OPTIONS"]["bucket_name"] = name
    settings.STORAGES = {**settings.STORAGES, "default": storage}
    settings.ASSAY_RELEASE_SIGNED_REDIRECT = s3_settings["redirect"]
    settings.ASSAY_RELEASE_URL_EXPIRY_SECONDS = 120
    client.bucket = name
    return client


@pytest.fixture
def ready(project, owner, bucket):
    annotators = [UserFactory(username=f"ann{i}") for i in range(3)]
    for n in range(30):
        item = ItemFactory(project=project, data={"text": f"review number {n} " * 5})
        for author in annotators:
            AnnotationFactory(item=item, author=author, value={"label": "positive"})
    release = release_build(release=make_release(project, owner))
    assert release.status == release.Status.READY, release.error
    return release


def _fetch(url: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - the local moto server
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read(), dict(response.headers)
    except HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def _manifest_sha(release, fmt: str) -> str:
    listed = {f["format"]: f for f in release.manifest["files"]}
    return listed[fmt]["sha256"]


def _download(client, release, fmt: str = "jsonl"):
    return client.get(reverse("releases:release-download", args=[release.pk, fmt]))


def test_settings_for_s3_build_an_s3storage_with_signed_urls(s3_settings, s3_endpoint):
    storage = s3_settings["default"]

    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    assert storage["OPTIONS"]["endpoint_url"] == s3_endpoint
    assert storage["OPTIONS"]["querystring_auth"] is True
    assert storage["OPTIONS"]["querystring_expire"] == 120
    assert s3_settings["redirect"] is True


def test_release_is_built_into_the_bucket(ready, bucket):
    from storages.backends.s3 import S3Storage

    listed = bucket.list_objects_v2(Bucket=bucket.bucket)["Contents"]
    keys = {entry["Key"]: entry["Size"] for entry in listed}

    assert isinstance(default_storage._wrapped, S3Storage)
    for record in ready.files.all():
        assert keys[record.path] == record.size
        body = bucket.get_object(Bucket=bucket.bucket, Key=record.path)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == record.sha256
    assert {"jsonl", "csv", "manifest"} <= set(ready.files.values_list("format", flat=True))


def test_download_redirects_to_a_presigned_url_serving_the_manifest_bytes(
    client, client_for, owner, ready, s3_endpoint
):
    client.force_login(owner)
    expected = _manifest_sha(ready, "jsonl")

    page = _download(client, ready)
    api = client_for(owner).get(reverse("api:release-download", args=[ready.pk]) + "?format=jsonl")

    for response in (page, api):
        assert response.status_code == 302
        location = response["Location"]
        assert location.startswith(f"{s3_endpoint}/")
        assert "X-Amz-Signature=" in location
        assert "X-Amz-Expires=120" in location
        assert response["ETag"] == f'"{expected}"'
        status, content, headers = _fetch(location)
        assert status == 200
        assert hashlib.sha256(content).hexdigest() == expected
        assert "attachment" in headers.get("Content-Disposition", "")
    status, part, _ = _fetch(page["Location"], Range="bytes=0-9")
    assert status == 206
    assert part == content[:10]


def test_object_deleted_from_the_bucket_is_refused(client, owner, ready, bucket):
    client.force_login(owner)
    record = ready.files.get(format="csv")
    bucket.delete_object(Bucket=bucket.bucket, Key=record.path)

    response = _download(client, ready, "csv")

    assert response.status_code == 500
    assert b"missing from storage" in response.content


def test_object_modified_in_the_bucket(client, owner, ready, bucket, settings):
    """The redirect trusts the build's checksum (the bytes never pass through Django): the
    change is visible to the client through the ETag, and a streamed download refuses it."""
    client.force_login(owner)
    record = ready.files.get(format="jsonl")
    original = bucket.get_object(Bucket=bucket.bucket, Key=record.path)["Body"].read()
    bucket.put_object(
        Bucket=bucket.bucket, Key=record.path, Body=original.replace(b"positive", b"negative")
    )

    redirected = _download(client, ready)
    status, content, _ = _fetch(redirected["Location"])
    settings.ASSAY_RELEASE_SIGNED_REDIRECT = False
    streamed = _download(client, ready)

    assert redirected.status_code == 302
    assert status == 200
    assert hashlib.sha256(content).hexdigest() != redirected["ETag"].strip('"')
    assert streamed.status_code == 500
    assert b"does not match its checksum" in streamed.content


def test_streamed_download_from_the_bucket_when_redirects_are_off(client, owner, ready, settings):
    settings.ASSAY_RELEASE_SIGNED_REDIRECT = False
    client.force_login(owner)

    response = _download(client, ready)
    content = b"".join(response.streaming_content)

    assert response.status_code == 200
    assert hashlib.sha256(content).hexdigest() == _manifest_sha(ready, "jsonl")
