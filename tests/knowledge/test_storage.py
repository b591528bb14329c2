"""Uploaded originals go through Django's storage API; S3 when a bucket is configured."""

import socket
import uuid
from dataclasses import dataclass

import boto3
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from moto.server import ThreadedMotoServer

from knowledge import services
from knowledge.models import Document
from tests.knowledge.helpers import ingest, make_knowledge_base

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class S3Bucket:
    client: object
    name: str

    def keys(self) -> list[str]:
        return [item["Key"] for item in self.client.list_objects_v2(Bucket=self.name).get("Contents", [])]


@pytest.fixture(scope="module")
def s3_server():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_storage(s3_server, settings, monkeypatch) -> S3Bucket:
    bucket = f"shop-knowledge-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    client = boto3.client("s3", endpoint_url=s3_server, region_name="ap-southeast-1")
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": s3_server,
                "region_name": "ap-southeast-1",
                "file_overwrite": False,
                "default_acl": None,
                "location": "media",
            },
        },
    }
    return S3Bucket(client, bucket)


def test_an_uploaded_original_is_stored_in_s3_and_indexed_from_there(s3_storage):
    knowledge_base = make_knowledge_base()

    document = services.document_create_from_upload(
        knowledge_base=knowledge_base,
        uploaded=SimpleUploadedFile("hours.md", b"# Hours\n\nOpen from 8 am to 9 pm."),
    )

    assert s3_storage.keys() == [f"media/{document.file.name}"]
    assert ingest(document).status == "ready"


def test_a_document_is_reprocessed_from_its_stored_original_in_s3(s3_storage):
    knowledge_base = make_knowledge_base()
    document = services.document_create_from_upload(
        knowledge_base=knowledge_base,
        uploaded=SimpleUploadedFile("hours.md", b"# Hours\n\nOpen from 8 am to 9 pm."),
    )
    ingest(document)

    services.document_reindex(document=document)
    ingest(document)

    assert document.status == Document.Status.READY
    assert document.live_version == 2


def test_a_missing_original_fails_with_a_reason(s3_storage):
    knowledge_base = make_knowledge_base()
    document = services.document_create_from_upload(
        knowledge_base=knowledge_base, uploaded=SimpleUploadedFile("gone.md", b"# Gone\n\nSoon deleted.")
    )
    s3_storage.client.delete_object(Bucket=s3_storage.name, Key=f"media/{document.file.name}")

    ingest(document)

    assert document.status == Document.Status.FAILED
    assert "upload" in document.error.lower()
