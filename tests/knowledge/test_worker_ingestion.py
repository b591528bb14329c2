"""The real path: a service call commits, the Celery worker on the ingest queue indexes."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from knowledge import services
from knowledge.models import Document
from tests.conftest import wait_until
from tests.knowledge.helpers import make_knowledge_base


@pytest.mark.django_db(transaction=True)
def test_an_uploaded_document_is_indexed_by_the_celery_worker(celery_worker_process):
    knowledge_base = make_knowledge_base()

    document = services.document_create_from_upload(
        knowledge_base=knowledge_base,
        uploaded=SimpleUploadedFile("delivery.md", "# Giao hàng\n\nMiễn phí giao hàng từ 500.000đ.".encode()),
    )

    def ready() -> bool:
        document.refresh_from_db()
        return document.status in {Document.Status.READY, Document.Status.FAILED}

    wait_until(ready, timeout=60, message="the worker to index the document")
    assert document.status == Document.Status.READY, document.error
    assert document.chunks.count() == 1
