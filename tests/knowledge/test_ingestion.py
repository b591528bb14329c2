from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from billing.models import UsageEvent
from knowledge import services
from knowledge.embedding import PermanentError, TransientError
from knowledge.models import Chunk, Document, FaqEntry
from knowledge.retrieval import retrieve
from tests.knowledge.helpers import count_embeddings, ingest, make_knowledge_base, paste

pytestmark = pytest.mark.django_db

LONG_DOCUMENT = "\n\n".join(
    f"## Section {section}\n\n"
    + "\n\n".join(
        f"Paragraph {section}.{number}: the store policy number {section * 10 + number} explains "
        f"how item {number} in aisle {section} is handled, wrapped and delivered to customers."
        for number in range(1, 6)
    )
    for section in range(1, 7)
)


def test_a_pasted_document_goes_from_queued_to_ready_with_chunks_and_stage_timings():
    knowledge_base = make_knowledge_base()
    document = paste(knowledge_base, "# Giờ mở cửa\n\nCửa hàng mở cửa từ 8 giờ đến 21 giờ mỗi ngày.")
    assert document.status == Document.Status.QUEUED

    outcome = ingest(document)

    assert outcome.status == "ready"
    assert document.status == Document.Status.READY
    assert document.progress == 100
    assert document.live_version == document.version == 1
    assert set(document.stage_timings) == {"extracting", "chunking", "embedding", "indexing"}
    chunk = Chunk.objects.get(document=document)
    assert chunk.heading_path == ["Giờ mở cửa"]
    assert chunk.is_live and chunk.embedding_model == "local-e5-small"
    assert len(chunk.embedding) == 384


def test_indexing_a_document_changes_the_knowledge_base_version():
    knowledge_base = make_knowledge_base()
    before = knowledge_base.version

    ingest(paste(knowledge_base, "Delivery is free over 500,000 VND."))

    knowledge_base.refresh_from_db()
    assert knowledge_base.version > before


def test_a_corrupt_file_fails_with_a_reason_a_person_understands():
    knowledge_base = make_knowledge_base()
    document = services.document_create_from_upload(
        knowledge_base=knowledge_base,
        uploaded=SimpleUploadedFile("policy.pdf", b"%PDF-1.7\n this is not really a pdf \x00\x01"),
    )

    outcome = ingest(document)

    assert outcome.status == "failed"
    assert document.status == Document.Status.FAILED
    assert "PDF" in document.error
    assert "Traceback" not in document.error
    assert not Chunk.objects.filter(document=document).exists()


def test_reindexing_unchanged_text_embeds_nothing(monkeypatch):
    knowledge_base = make_knowledge_base()
    document = paste(knowledge_base, LONG_DOCUMENT)
    ingest(document)
    embedder = count_embeddings(monkeypatch)

    services.document_reindex(document=document)
    outcome = ingest(document)

    assert outcome.status == "ready"
    assert embedder.texts == []
    assert document.embedded_chunk_count == 0
    assert document.live_version == 2


def test_a_one_paragraph_edit_re_embeds_only_one_or_two_chunks(monkeypatch):
    knowledge_base = make_knowledge_base()
    document = paste(knowledge_base, LONG_DOCUMENT)
    ingest(document)
    chunk_count = document.chunk_count
    embedder = count_embeddings(monkeypatch)

    edited = LONG_DOCUMENT.replace(
        "Paragraph 4.3: the store policy", "Paragraph 4.3: the revised store policy"
    )
    services.document_update_text(document=document, text=edited)
    ingest(document)

    assert chunk_count >= 6
    assert 1 <= len(embedder.texts) <= 2
    assert any("revised store policy" in text for text in embedder.texts)
    assert document.embedded_chunk_count == len(embedder.texts)


def test_retrieval_never_sees_a_half_indexed_version(monkeypatch):
    knowledge_base = make_knowledge_base()
    document = paste(knowledge_base, "Returns are accepted within 30 days.")
    ingest(document)
    seen_while_embedding = []
    embedder = count_embeddings(monkeypatch)
    embedder.before_call = lambda: seen_while_embedding.append(
        [hit.text for hit in retrieve(knowledge_base=knowledge_base, query="returns days").hits]
    )

    services.document_update_text(document=document, text="Returns are accepted within 60 days.")
    ingest(document)

    assert seen_while_embedding == [["Returns are accepted within 30 days."]]
    after = [hit.text for hit in retrieve(knowledge_base=knowledge_base, query="returns days").hits]
    assert after == ["Returns are accepted within 60 days."]


def test_a_superseded_version_stops_and_leaves_the_newer_one_to_its_own_run(monkeypatch):
    knowledge_base = make_knowledge_base()
    document = paste(knowledge_base, "Version one of the text.")
    embedder = count_embeddings(monkeypatch)
    # While version 1 embeds, staff save version 2.
    embedder.before_call = lambda: (
        services.document_update_text(document=Document.objects.get(pk=document.pk), text="Version two.")
        if embedder.calls == 0
        else None
    )

    outcome = ingest(document)

    assert outcome.status == "superseded"
    assert document.version == 2 and document.status == Document.Status.QUEUED
    assert not Chunk.objects.filter(document=document).exists()
    assert ingest(document).status == "ready"
    assert list(Chunk.objects.filter(document=document).values_list("text", flat=True)) == ["Version two."]


def test_running_the_same_version_twice_does_the_work_once():
    knowledge_base = make_knowledge_base()
    document = paste(knowledge_base, "Idempotent text.")

    first = ingest(document)
    second = ingest(document)

    assert (first.status, second.status) == ("ready", "skipped")
    assert Chunk.objects.filter(document=document).count() == 1


def test_a_transient_provider_error_puts_the_document_back_in_the_queue_for_a_retry(monkeypatch):
    knowledge_base = make_knowledge_base()
    document = paste(knowledge_base, "Text that meets an outage.")
    embedder = count_embeddings(monkeypatch)

    def outage():
        raise TransientError("503 from the provider")

    embedder.before_call = outage

    with pytest.raises(TransientError):
        ingest(document, final_attempt=False)
    document.refresh_from_db()
    assert document.status == Document.Status.QUEUED
    assert "retrying" in document.error

    ingest(document, final_attempt=True)
    assert document.status == Document.Status.FAILED
    assert "unavailable" in document.error


def test_a_permanent_provider_error_fails_the_document(monkeypatch):
    knowledge_base = make_knowledge_base()
    document = paste(knowledge_base, "Text the provider refuses.")
    embedder = count_embeddings(monkeypatch)

    def refuse():
        raise PermanentError("API key not valid")

    embedder.before_call = refuse

    assert ingest(document).status == "failed"
    assert "refused" in document.error and "API key not valid" in document.error


def test_a_faq_sheet_becomes_one_chunk_and_one_entry_per_question():
    knowledge_base = make_knowledge_base()
    sheet = "Câu hỏi,Trả lời\nCó giao hàng không?,Có giao toàn quốc.\nDo you ship?,Yes we ship nationwide.\n"
    document = services.document_create_from_upload(
        knowledge_base=knowledge_base, uploaded=SimpleUploadedFile("faq.csv", sheet.encode())
    )
    assert document.source == Document.Source.FAQ

    ingest(document)

    assert document.status == Document.Status.READY
    assert document.chunk_count == 2
    assert list(FaqEntry.objects.filter(document=document).values_list("question", flat=True)) == [
        "Có giao hàng không?",
        "Do you ship?",
    ]
    assert all(
        "Có giao toàn quốc." in chunk.text or "nationwide" in chunk.text for chunk in document.chunks.all()
    )


def test_disabling_a_document_hides_it_from_retrieval_and_changes_the_version():
    knowledge_base = make_knowledge_base()
    document = paste(knowledge_base, "Gift wrapping is free.")
    ingest(document)
    knowledge_base.refresh_from_db()
    version = knowledge_base.version

    services.document_set_enabled(document=document, enabled=False)

    knowledge_base.refresh_from_db()
    assert retrieve(knowledge_base=knowledge_base, query="gift wrapping").hits == []
    assert knowledge_base.version > version
    services.document_set_enabled(document=document, enabled=True)
    assert len(retrieve(knowledge_base=knowledge_base, query="gift wrapping").hits) == 1


def test_embedding_usage_is_recorded_once_per_batch_for_billing():
    knowledge_base = make_knowledge_base()
    document = paste(knowledge_base, LONG_DOCUMENT)

    ingest(document)

    events = UsageEvent.objects.filter(document_id=document.pk, kind="embedding")
    assert events.count() >= 1
    assert sum(event.input_tokens for event in events) > 0
    assert {event.provider for event in events} == {"local"}


def test_an_upload_over_the_size_limit_is_refused_before_storage(settings):
    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 1000
    knowledge_base = make_knowledge_base()

    with pytest.raises(Exception, match="limit"):
        services.document_create_from_upload(
            knowledge_base=knowledge_base, uploaded=SimpleUploadedFile("big.txt", b"x" * 1001)
        )
    assert not Document.objects.exists()


def test_the_watchdog_requeues_a_document_stuck_in_a_stage(django_capture_on_commit_callbacks):
    knowledge_base = make_knowledge_base()
    document = paste(knowledge_base, "Stuck text.")
    Document.objects.filter(pk=document.pk).update(
        status=Document.Status.EMBEDDING, attempts=1, status_changed_at=timezone.now() - timedelta(minutes=30)
    )

    counts = services.documents_requeue_stuck()

    document.refresh_from_db()
    assert counts == {"requeued": 1, "failed": 0}
    assert document.status == Document.Status.QUEUED
    assert ingest(document).status == "ready"


def test_the_watchdog_leaves_a_document_that_is_still_moving_alone():
    knowledge_base = make_knowledge_base()
    document = paste(knowledge_base, "Busy text.")
    Document.objects.filter(pk=document.pk).update(
        status=Document.Status.EMBEDDING, status_changed_at=timezone.now() - timedelta(minutes=1)
    )

    assert services.documents_requeue_stuck() == {"requeued": 0, "failed": 0}


def test_the_watchdog_gives_up_after_repeated_attempts_with_a_visible_reason():
    knowledge_base = make_knowledge_base()
    document = paste(knowledge_base, "Text that kills workers.")
    Document.objects.filter(pk=document.pk).update(
        status=Document.Status.EXTRACTING,
        attempts=services.MAX_ATTEMPTS,
        status_changed_at=timezone.now() - timedelta(hours=1),
    )

    services.documents_requeue_stuck()

    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert "stopped" in document.error


def test_a_failed_document_is_retried_from_its_stored_original():
    knowledge_base = make_knowledge_base()
    document = services.document_create_from_upload(
        knowledge_base=knowledge_base,
        uploaded=SimpleUploadedFile("notes.md", b"# Notes\n\nKept safe."),
    )
    Document.objects.filter(pk=document.pk).update(status=Document.Status.FAILED, error="worker crashed")

    services.document_reindex(document=document)
    ingest(document)

    assert document.status == Document.Status.READY
    assert document.error == ""
