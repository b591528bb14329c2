"""Ingestion of one document version: extract -> chunk -> embed -> swap in.

Each stage is recorded on the document (status, progress, timings, a readable
error). The run claims the document with a conditional update, so two workers never
process the same version, and a superseded version stops quietly. Vectors come from
the (model, content hash) cache first; only new text reaches the provider. The new
chunks replace the old ones in one transaction: retrieval sees the old version or
the new one, never a mix.
"""

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing.services import usage_record
from knowledge.embedding import PermanentError, TransientError, get_embedder
from knowledge.ingest.extract import Extracted, ExtractionError, extract, extract_text
from knowledge.ingest.fetch import FetchError, fetch_url
from knowledge.ingest.split import ChunkDraft, split_blocks
from knowledge.models import Chunk, Document, EmbeddingCacheEntry, FaqEntry, KnowledgeBase
from knowledge.textnorm import fold

log = logging.getLogger(__name__)

REMOTE_EMBED_CONCURRENCY = 4


class Superseded(Exception):
    """A newer version was requested while this one was being processed."""


@dataclass(frozen=True)
class IngestOutcome:
    status: str  # "ready" | "failed" | "skipped" | "superseded"
    embedded: int = 0
    reused: int = 0


def document_ingest(*, document_id: int, version: int, final_attempt: bool = True) -> IngestOutcome:
    claimed = Document.objects.filter(pk=document_id, version=version, status=Document.Status.QUEUED).update(
        status=Document.Status.EXTRACTING,
        progress=5,
        error="",
        attempts=F("attempts") + 1,
        status_changed_at=timezone.now(),
        stage_timings={},
    )
    if not claimed:
        return IngestOutcome("skipped")
    document = Document.objects.select_related("knowledge_base").get(pk=document_id)
    run = _Run(document, version)
    try:
        return run.execute()
    except Superseded:
        return IngestOutcome("superseded")
    except ExtractionError as error:
        run.fail(str(error))
    except FetchError as error:
        run.fail(str(error))
    except PermanentError as error:
        run.fail(f"The embedding service refused the text: {error}")
    except TransientError as error:
        if not final_attempt:
            run.requeue(f"The embedding service is unavailable ({error}); retrying.")
            raise
        run.fail(f"The embedding service stayed unavailable after several tries ({error}). Retry later.")
    except Exception as error:
        log.exception("ingesting document %s version %s failed", document_id, version)
        run.fail(f"Unexpected error while processing the document ({type(error).__name__}). It was logged.")
    return IngestOutcome("failed")


class _Run:
    def __init__(self, document: Document, version: int) -> None:
        self.document = document
        self.version = version
        self.timings: dict[str, float] = {}

    def execute(self) -> IngestOutcome:
        knowledge_base = self.document.knowledge_base
        with self._stage("extracting"):
            extracted = self._extract()
        self._advance(
            Document.Status.CHUNKING, 20, file_type=extracted.file_type, page_count=extracted.page_count
        )
        with self._stage("chunking"):
            drafts = split_blocks(
                extracted.blocks,
                chunk_tokens=knowledge_base.chunk_tokens,
                overlap_tokens=knowledge_base.chunk_overlap_tokens,
            )
        if not drafts:
            raise ExtractionError("No text could be extracted from the document.")
        self._advance(Document.Status.EMBEDDING, 30)
        vectors_by_model: dict[str, list[list[float]]] = {}
        embedded = reused = 0
        with self._stage("embedding"):
            models_ = knowledge_base.embedding_models_in_use()
            for index, model in enumerate(models_):
                share = (30 + 65 * index / len(models_), 65 / len(models_))
                vectors, new, cached = embed_with_cache(
                    drafts,
                    model=model,
                    on_progress=lambda done, total, share=share: self._progress(
                        int(share[0] + share[1] * done / total)
                    ),
                    usage_key=f"doc{self.document.pk}:v{self.version}",
                    knowledge_base_id=knowledge_base.pk,
                    document_id=self.document.pk,
                )
                vectors_by_model[model] = vectors
                embedded += new
                reused += cached
        self._swap_in(drafts, vectors_by_model, extracted, embedded)
        return IngestOutcome("ready", embedded=embedded, reused=reused)

    def _extract(self) -> Extracted:
        document = self.document
        limit = settings.KNOWLEDGE_MAX_UPLOAD_BYTES
        if document.source == Document.Source.TEXT:
            return extract_text(document.text)
        if document.source == Document.Source.URL:
            data = fetch_url(document.source_url, max_bytes=limit)
            return extract(data, filename=document.source_url, max_bytes=limit)
        if not document.file:
            raise ExtractionError("The document has no stored file; upload it again.")
        try:
            with document.file.open("rb") as handle:
                data = handle.read(limit + 1)
        except FileNotFoundError:
            raise ExtractionError("The stored original is missing; upload the file again.") from None
        return extract(data, filename=document.original_filename or document.file.name, max_bytes=limit)

    def _swap_in(
        self,
        drafts: list[ChunkDraft],
        vectors_by_model: dict[str, list[list[float]]],
        extracted: Extracted,
        embedded: int,
    ) -> None:
        started = time.perf_counter()
        with transaction.atomic():
            document = Document.objects.select_for_update().get(pk=self.document.pk)
            if document.version != self.version:
                raise Superseded
            Chunk.objects.filter(document=document).delete()
            Chunk.objects.bulk_create(
                [
                    Chunk(
                        knowledge_base_id=document.knowledge_base_id,
                        document=document,
                        document_version=self.version,
                        position=draft.position,
                        text=draft.text,
                        heading_path=list(draft.heading_path),
                        token_count=draft.token_count,
                        content_hash=draft.content_hash,
                        embedding_model=model,
                        embedding=vectors[draft.position],
                        is_live=document.enabled,
                        search_text=fold(draft.text),
                    )
                    for model, vectors in vectors_by_model.items()
                    for draft in drafts
                ],
                batch_size=500,
            )
            FaqEntry.objects.filter(document=document).delete()
            FaqEntry.objects.bulk_create(
                FaqEntry(
                    knowledge_base_id=document.knowledge_base_id,
                    document=document,
                    question=pair.question,
                    answer=pair.answer,
                    position=position,
                )
                for position, pair in enumerate(extracted.faq_pairs)
            )
            now = timezone.now()
            self.timings["indexing"] = round(time.perf_counter() - started, 3)
            Document.objects.filter(pk=document.pk).update(
                live_version=self.version,
                status=Document.Status.READY,
                progress=100,
                error="",
                status_changed_at=now,
                indexed_at=now,
                chunk_count=len(drafts),
                embedded_chunk_count=embedded,
                stage_timings=self.timings,
            )
            KnowledgeBase.objects.filter(pk=document.knowledge_base_id).update(version=F("version") + 1)

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - started, 3)

    def _advance(self, status: str, progress: int, **fields) -> None:
        updated = Document.objects.filter(pk=self.document.pk, version=self.version).update(
            status=status,
            progress=progress,
            status_changed_at=timezone.now(),
            stage_timings=self.timings,
            **fields,
        )
        if not updated:
            raise Superseded

    def _progress(self, progress: int) -> None:
        # Also a heartbeat: the watchdog only requeues documents whose stage is still.
        updated = Document.objects.filter(pk=self.document.pk, version=self.version).update(
            progress=progress, status_changed_at=timezone.now()
        )
        if not updated:
            raise Superseded

    def fail(self, message: str) -> None:
        Document.objects.filter(pk=self.document.pk, version=self.version).update(
            status=Document.Status.FAILED,
            error=message,
            status_changed_at=timezone.now(),
            stage_timings=self.timings,
        )

    def requeue(self, message: str) -> None:
        Document.objects.filter(pk=self.document.pk, version=self.version).update(
            status=Document.Status.QUEUED, error=message, status_changed_at=timezone.now()
        )


def _embed_batch(embedder, batch: list[tuple[str, str]]):
    started = time.perf_counter()
    result = embedder.embed_documents([text for _, text in batch])
    return batch, result, int((time.perf_counter() - started) * 1000)


def embed_with_cache(
    drafts: list[ChunkDraft],
    *,
    model: str,
    on_progress: Callable[[int, int], None] | None = None,
    usage_key: str,
    knowledge_base_id: int | None = None,
    document_id: int | None = None,
) -> tuple[list[list[float]], int, int]:
    """Vectors for every draft, in order; returns (vectors, newly embedded, reused).

    New vectors are cached batch by batch, so a run interrupted by a provider outage
    resumes where it stopped instead of paying for the same text again.
    """
    hashes = [draft.content_hash for draft in drafts]
    cached = dict(
        EmbeddingCacheEntry.objects.filter(model=model, content_hash__in=set(hashes)).values_list(
            "content_hash", "embedding"
        )
    )
    missing: dict[str, str] = {}
    for draft in drafts:
        if draft.content_hash not in cached:
            missing.setdefault(draft.content_hash, draft.text)
    reused = len(drafts) - sum(1 for draft in drafts if draft.content_hash in missing)

    embedder = get_embedder(model)
    pending = list(missing.items())
    batches = [
        pending[start : start + embedder.max_batch] for start in range(0, len(pending), embedder.max_batch)
    ]
    done = 0
    # Remote providers answer batches in parallel; the local model already uses every core.
    workers = 1 if embedder.provider == "local" else REMOTE_EMBED_CONCURRENCY
    with ThreadPoolExecutor(max_workers=workers) if workers > 1 else nullcontext() as pool:
        mapper = pool.map if pool else map
        for batch, result, latency_ms in mapper(lambda batch: _embed_batch(embedder, batch), batches):
            EmbeddingCacheEntry.objects.bulk_create(
                [
                    EmbeddingCacheEntry(model=model, content_hash=content_hash, embedding=vector)
                    for (content_hash, _), vector in zip(batch, result.vectors, strict=True)
                ],
                ignore_conflicts=True,
            )
            batch_id = hashlib.sha256("".join(key for key, _ in batch).encode()).hexdigest()[:16]
            usage_record(
                idempotency_key=f"embed:{usage_key}:{model}:{batch_id}",
                kind="embedding",
                provider=embedder.provider,
                model=result.model,
                input_tokens=result.input_tokens,
                latency_ms=latency_ms,
                knowledge_base_id=knowledge_base_id,
                document_id=document_id,
            )
            for (content_hash, _), vector in zip(batch, result.vectors, strict=True):
                cached[content_hash] = vector
            done += len(batch)
            if on_progress:
                on_progress(done, len(pending))
    return [list(cached[content_hash]) for content_hash in hashes], len(missing), reused
