"""Writes on the knowledge base: documents in, versions bumped, ingestion enqueued.

Every change to what a document says bumps its version and enqueues ingestion after
the transaction commits; the ingestion pipeline (knowledge.ingest.pipeline) swaps
the new chunks in atomically, so retrieval keeps serving the previous version until
then.
"""

import hashlib
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from knowledge.ingest.extract import detect_file_type
from knowledge.models import Chunk, Document, KnowledgeBase

STUCK_AFTER = timedelta(minutes=10)
MAX_ATTEMPTS = 5


def _enqueue_ingest(document: Document) -> None:
    from knowledge.tasks import ingest_document

    document_id, version = document.pk, document.version
    # robust: a broker outage must not undo the save; the watchdog re-queues later.
    transaction.on_commit(lambda: ingest_document.delay(document_id, version), robust=True)


def _mark_queued(document: Document) -> None:
    document.status = Document.Status.QUEUED
    document.progress = 0
    document.error = ""
    document.attempts = 0
    document.status_changed_at = timezone.now()


def knowledge_base_touch(*, knowledge_base_id: int) -> None:
    """What retrieval can return changed: answer caches keyed on the version expire."""
    KnowledgeBase.objects.filter(pk=knowledge_base_id).update(version=F("version") + 1)


def _check_upload(uploaded: UploadedFile) -> bytes:
    limit = settings.KNOWLEDGE_MAX_UPLOAD_BYTES
    if uploaded.size is not None and uploaded.size > limit:
        raise ValidationError(
            f"{uploaded.name} is {uploaded.size / 1_048_576:.1f} MB; the limit is {limit / 1_048_576:.0f} MB."
        )
    data = uploaded.read(limit + 1)
    uploaded.seek(0)
    if len(data) > limit:
        raise ValidationError(f"{uploaded.name} is larger than the {limit / 1_048_576:.0f} MB limit.")
    if not data:
        raise ValidationError(f"{uploaded.name} is empty.")
    return data


@transaction.atomic
def document_create_from_upload(
    *, knowledge_base: KnowledgeBase, uploaded: UploadedFile, title: str = "", created_by=None
) -> Document:
    data = _check_upload(uploaded)
    file_type = _sniff(data, uploaded.name)
    document = Document(
        knowledge_base=knowledge_base,
        title=title or _title_from_filename(uploaded.name),
        source=Document.Source.FAQ if file_type in {"csv", "xlsx"} else Document.Source.UPLOAD,
        original_filename=uploaded.name[:300],
        content_hash=hashlib.sha256(data).hexdigest(),
        file_type=file_type,
        created_by=created_by,
    )
    _mark_queued(document)
    document.file.save(uploaded.name, uploaded, save=False)
    document.save()
    _enqueue_ingest(document)
    return document


@transaction.atomic
def document_create_from_text(
    *, knowledge_base: KnowledgeBase, title: str, text: str, created_by=None
) -> Document:
    if not text.strip():
        raise ValidationError("The text is empty.")
    document = Document(
        knowledge_base=knowledge_base,
        title=title,
        source=Document.Source.TEXT,
        text=text,
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
        created_by=created_by,
    )
    _mark_queued(document)
    document.save()
    _enqueue_ingest(document)
    return document


@transaction.atomic
def document_create_from_url(
    *, knowledge_base: KnowledgeBase, url: str, title: str = "", created_by=None
) -> Document:
    document = Document(
        knowledge_base=knowledge_base,
        title=title or url,
        source=Document.Source.URL,
        source_url=url,
        created_by=created_by,
    )
    _mark_queued(document)
    document.save()
    _enqueue_ingest(document)
    return document


@transaction.atomic
def document_update_text(*, document: Document, text: str) -> Document:
    """Edit a pasted-text document; only chunks whose text changed are re-embedded."""
    if not text.strip():
        raise ValidationError("The text is empty.")
    new_hash = hashlib.sha256(text.encode()).hexdigest()
    if new_hash == document.content_hash and document.status == Document.Status.READY:
        return document
    document.text = text
    document.content_hash = new_hash
    return _new_version(document)


@transaction.atomic
def document_replace_file(*, document: Document, uploaded: UploadedFile) -> Document:
    data = _check_upload(uploaded)
    new_hash = hashlib.sha256(data).hexdigest()
    if new_hash == document.content_hash and document.status == Document.Status.READY:
        return document
    old_name = document.file.name if document.file else ""
    document.file.save(uploaded.name, uploaded, save=False)
    document.original_filename = uploaded.name[:300]
    document.content_hash = new_hash
    document.file_type = _sniff(data, uploaded.name)
    document = _new_version(document)
    if old_name and old_name != document.file.name:
        storage = document.file.storage
        transaction.on_commit(lambda: storage.delete(old_name), robust=True)
    return document


@transaction.atomic
def document_reindex(*, document: Document) -> Document:
    """Process the stored original again (also how a failed document is retried)."""
    return _new_version(document)


def _new_version(document: Document) -> Document:
    document.version = F("version") + 1
    _mark_queued(document)
    document.save()
    document.refresh_from_db()
    _enqueue_ingest(document)
    return document


@transaction.atomic
def document_set_enabled(*, document: Document, enabled: bool) -> None:
    Document.objects.filter(pk=document.pk).update(enabled=enabled, updated_at=timezone.now())
    Chunk.objects.filter(document=document, document_version=document.live_version).update(is_live=enabled)
    document.enabled = enabled
    knowledge_base_touch(knowledge_base_id=document.knowledge_base_id)


@transaction.atomic
def document_delete(*, document: Document) -> None:
    knowledge_base_id = document.knowledge_base_id
    file_name, storage = (document.file.name, document.file.storage) if document.file else ("", None)
    document.delete()
    knowledge_base_touch(knowledge_base_id=knowledge_base_id)
    if file_name:
        transaction.on_commit(lambda: storage.delete(file_name), robust=True)


@transaction.atomic
def knowledge_base_switch_embedding_model(*, knowledge_base: KnowledgeBase, model: str) -> None:
    """Re-embed every document with `model` in the background; the current vectors keep
    serving until all documents have vectors of the new model, then one swap."""
    from knowledge.tasks import reembed_knowledge_base

    if model == knowledge_base.embedding_model:
        KnowledgeBase.objects.filter(pk=knowledge_base.pk).update(pending_embedding_model="")
        return
    KnowledgeBase.objects.filter(pk=knowledge_base.pk).update(pending_embedding_model=model)
    knowledge_base_id = knowledge_base.pk
    transaction.on_commit(lambda: reembed_knowledge_base.delay(knowledge_base_id, model), robust=True)


def documents_requeue_stuck(*, now=None) -> dict[str, int]:
    """The watchdog: documents whose stage has not moved for STUCK_AFTER are queued
    again (their task was lost or their worker died); after MAX_ATTEMPTS they fail
    with a message that says so."""
    now = now or timezone.now()
    stale = Document.objects.filter(status__in=Document.IN_PROGRESS, status_changed_at__lt=now - STUCK_AFTER)
    counts = {"requeued": 0, "failed": 0}
    for document in stale.only("pk", "version", "attempts", "status"):
        if document.attempts >= MAX_ATTEMPTS:
            failed = Document.objects.filter(
                pk=document.pk, version=document.version, status=document.status
            ).update(
                status=Document.Status.FAILED,
                error=f"Processing stopped {document.attempts} times without finishing "
                "(the worker may be running out of time or memory). Retry it, or split the file.",
                status_changed_at=now,
            )
            counts["failed"] += failed
            continue
        claimed = Document.objects.filter(
            pk=document.pk, version=document.version, status=document.status
        ).update(status=Document.Status.QUEUED, status_changed_at=now)
        if claimed:
            counts["requeued"] += 1
            from knowledge.tasks import ingest_document

            ingest_document.delay(document.pk, document.version)
    return counts


def _sniff(data: bytes, filename: str) -> str:
    try:
        return detect_file_type(data, filename)
    except Exception:  # noqa: BLE001 - the pipeline reports unusable files with a reason
        return ""


def _title_from_filename(name: str) -> str:
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0].replace("_", " ").replace("-", " ").strip()
    return (stem[:1].upper() + stem[1:])[:300] or name[:300]
