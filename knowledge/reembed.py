"""Switching a knowledge base to another embedding model, in the background.

Documents get vectors of the new model beside the current ones (retrieval keeps
using the current model); when every document has them, one transaction makes the
new model the serving one and drops the old vectors. Re-running is safe: documents
already done are skipped and the embedding cache holds finished batches.
"""

from django.db import transaction
from django.db.models import F

from knowledge.ingest.pipeline import embed_with_cache
from knowledge.ingest.split import ChunkDraft
from knowledge.models import Chunk, Document, KnowledgeBase


def knowledge_base_reembed(*, knowledge_base_id: int, model: str) -> str:
    knowledge_base = KnowledgeBase.objects.get(pk=knowledge_base_id)
    if knowledge_base.pending_embedding_model != model:
        return "cancelled"
    serving = knowledge_base.embedding_model
    # A document that finished indexing with the old model only, while this ran, is
    # caught by the next pass.
    for _ in range(3):
        for document in knowledge_base.documents.filter(status=Document.Status.READY, live_version__gt=0):
            _add_vectors(document, serving_model=serving, model=model)
        with transaction.atomic():
            knowledge_base = KnowledgeBase.objects.select_for_update().get(pk=knowledge_base_id)
            if knowledge_base.pending_embedding_model != model:
                return "cancelled"
            if _documents_without(knowledge_base, model):
                continue
            Chunk.objects.filter(knowledge_base=knowledge_base).exclude(embedding_model=model).delete()
            KnowledgeBase.objects.filter(pk=knowledge_base_id).update(
                embedding_model=model, pending_embedding_model="", version=F("version") + 1
            )
            return "switched"
    raise RuntimeError(f"knowledge base {knowledge_base_id} kept changing; the switch to {model} will retry")


def _add_vectors(document: Document, *, serving_model: str, model: str) -> None:
    version = document.live_version
    chunks = Chunk.objects.filter(document=document, document_version=version, embedding_model=serving_model)
    if Chunk.objects.filter(document=document, document_version=version, embedding_model=model).exists():
        return
    chunks = list(chunks.order_by("position"))
    drafts = [
        ChunkDraft(
            position=index,
            text=chunk.text,
            heading_path=tuple(chunk.heading_path),
            token_count=chunk.token_count,
            content_hash=chunk.content_hash,
        )
        for index, chunk in enumerate(chunks)
    ]
    vectors, _, _ = embed_with_cache(
        drafts,
        model=model,
        usage_key=f"reembed:doc{document.pk}:v{version}",
        knowledge_base_id=document.knowledge_base_id,
        document_id=document.pk,
    )
    with transaction.atomic():
        locked = Document.objects.select_for_update().get(pk=document.pk)
        if locked.live_version != version:
            return  # re-ingested meanwhile, with both models
        Chunk.objects.bulk_create(
            [
                Chunk(
                    knowledge_base_id=chunk.knowledge_base_id,
                    document_id=chunk.document_id,
                    document_version=version,
                    position=chunk.position,
                    text=chunk.text,
                    heading_path=chunk.heading_path,
                    token_count=chunk.token_count,
                    content_hash=chunk.content_hash,
                    embedding_model=model,
                    embedding=vector,
                    is_live=chunk.is_live,
                    search_text=chunk.search_text,
                )
                for chunk, vector in zip(chunks, vectors, strict=True)
            ],
            batch_size=500,
        )


def _documents_without(knowledge_base: KnowledgeBase, model: str) -> list[int]:
    ready = knowledge_base.documents.filter(status=Document.Status.READY, live_version__gt=0)
    having = Chunk.objects.filter(knowledge_base=knowledge_base, embedding_model=model).values("document_id")
    return list(ready.exclude(pk__in=having).values_list("pk", flat=True))
