"""Ingestion and model switching with Gemini embeddings, through the real SDK against
the loopback Gemini server: provider calls are counted where they arrive."""

import pytest

from knowledge import services
from knowledge.embedding import TransientError
from knowledge.models import Chunk, KnowledgeBase
from knowledge.reembed import knowledge_base_reembed
from knowledge.retrieval import retrieve
from tests.knowledge.helpers import ingest, make_knowledge_base, paste
from tests.knowledge.test_ingestion import LONG_DOCUMENT

pytestmark = pytest.mark.django_db

GEMINI = "gemini-embedding-001-768"


def embedded_texts(server) -> list[str]:
    return [part["text"] for item in server.embed_requests() for part in item["content"]["parts"]]


def test_a_one_paragraph_edit_sends_one_or_two_texts_to_gemini(gemini_server):
    knowledge_base = make_knowledge_base(embedding_model=GEMINI)
    document = paste(knowledge_base, LONG_DOCUMENT)
    ingest(document)
    first_run = embedded_texts(gemini_server)
    gemini_server.reset()

    edited = LONG_DOCUMENT.replace(
        "Paragraph 2.2: the store policy", "Paragraph 2.2: the amended store policy"
    )
    services.document_update_text(document=document, text=edited)
    ingest(document)

    assert len(first_run) == document.chunk_count >= 6
    second_run = embedded_texts(gemini_server)
    assert 1 <= len(second_run) <= 2
    assert any("amended" in text for text in second_run)
    request = gemini_server.embed_requests()[0]
    assert request["taskType"] == "RETRIEVAL_DOCUMENT"
    assert request["outputDimensionality"] == 768


def test_a_gemini_outage_requeues_then_the_retry_reuses_what_was_already_embedded(gemini_server):
    knowledge_base = make_knowledge_base(embedding_model=GEMINI)
    document = paste(knowledge_base, LONG_DOCUMENT)
    gemini_server.fail_next(503, times=1)

    with pytest.raises(TransientError):
        ingest(document, final_attempt=False)
    document.refresh_from_db()
    assert document.status == "queued"

    assert ingest(document).status == "ready"
    assert len(Chunk.objects.filter(document=document)) == document.chunk_count


def test_switching_the_model_re_embeds_while_the_old_vectors_keep_serving(gemini_server):
    knowledge_base = make_knowledge_base()  # local-e5-small
    document = paste(knowledge_base, "# Giờ mở cửa\n\nCửa hàng mở cửa từ 8 giờ đến 21 giờ.", title="Hours")
    ingest(document)
    version = KnowledgeBase.objects.get(pk=knowledge_base.pk).version

    services.knowledge_base_switch_embedding_model(knowledge_base=knowledge_base, model=GEMINI)
    knowledge_base.refresh_from_db()
    assert knowledge_base.pending_embedding_model == GEMINI
    assert retrieve(knowledge_base=knowledge_base, query="gio mo cua").embedding_model == "local-e5-small"

    assert knowledge_base_reembed(knowledge_base_id=knowledge_base.pk, model=GEMINI) == "switched"

    knowledge_base.refresh_from_db()
    assert (knowledge_base.embedding_model, knowledge_base.pending_embedding_model) == (GEMINI, "")
    assert knowledge_base.version > version
    assert set(Chunk.objects.filter(document=document).values_list("embedding_model", flat=True)) == {GEMINI}
    result = retrieve(knowledge_base=knowledge_base, query="gio mo cua")
    assert result.embedding_model == GEMINI
    assert result.hits[0].document_title == "Hours"


def test_a_document_indexed_during_a_switch_gets_vectors_of_both_models(gemini_server):
    knowledge_base = make_knowledge_base()
    KnowledgeBase.objects.filter(pk=knowledge_base.pk).update(pending_embedding_model=GEMINI)
    knowledge_base.refresh_from_db()

    document = paste(knowledge_base, "Returns within 30 days.")
    ingest(document)

    assert set(Chunk.objects.filter(document=document).values_list("embedding_model", flat=True)) == {
        "local-e5-small",
        GEMINI,
    }
    assert len(retrieve(knowledge_base=knowledge_base, query="returns").hits) == 1
