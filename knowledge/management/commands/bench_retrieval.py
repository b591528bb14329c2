"""Retrieval quality on a SQuAD-format file, through the real ingestion and retrieval.

Each paragraph of the corpus becomes a document of a fresh knowledge base (indexed
by the ingestion pipeline), each question goes through the retrieval service, and a
hit counts for the paragraph its chunk came from. With --baseline, brute-force dense
search over whole paragraphs with the same embedder runs in the same process, for a
side-by-side comparison; both use the same query vector, embedded once per question.

Ingestion tasks run eagerly in this process: nothing reaches the shared broker, and
a worker of another process cannot claim the benchmark's documents first.
"""

import json
import logging
import signal
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from config.celery import app as celery_app
from knowledge import services
from knowledge.embedding import get_embedder
from knowledge.models import Chunk, Document, EmbeddingCacheEntry, KnowledgeBase
from knowledge.retrieval import retrieve


def load_squad(path: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """(paragraphs, [(question, paragraph index)]) in file order."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError) as error:
        raise CommandError(f"{path} is not a SQuAD-format JSON file: {error}") from None
    paragraphs, questions = [], []
    for article in data:
        for paragraph in article["paragraphs"]:
            index = len(paragraphs)
            paragraphs.append(paragraph["context"])
            questions.extend((qa["question"], index) for qa in paragraph["qas"])
    return paragraphs, questions


def metrics(ranked: list[list[int]], expected: list[int]) -> dict[str, float]:
    recall_1 = sum(ranks[:1] == [want] for ranks, want in zip(ranked, expected, strict=True))
    recall_5 = sum(want in ranks[:5] for ranks, want in zip(ranked, expected, strict=True))
    reciprocal = sum(
        1 / (ranks[:10].index(want) + 1) if want in ranks[:10] else 0.0
        for ranks, want in zip(ranked, expected, strict=True)
    )
    count = len(expected)
    return {
        "recall_at_1": round(recall_1 / count, 4),
        "recall_at_5": round(recall_5 / count, 4),
        "mrr_at_10": round(reciprocal / count, 4),
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _delete(knowledge_base: KnowledgeBase) -> None:
    """The knowledge base and the vectors its run cached, so the next run embeds afresh."""
    hashes = set(Chunk.objects.filter(knowledge_base=knowledge_base).values_list("content_hash", flat=True))
    EmbeddingCacheEntry.objects.filter(
        model=knowledge_base.embedding_model,
        content_hash__in=hashes,
        created_at__gte=knowledge_base.created_at,
    ).delete()
    knowledge_base.delete()


class Command(BaseCommand):
    help = "Paragraph-level recall@1/@5, MRR@10 and latency of retrieval on a SQuAD-format file."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--squad", required=True, type=Path, help="SQuAD-format JSON with the questions.")
        parser.add_argument("--corpus", type=Path, help="SQuAD-format JSON whose paragraphs are indexed "
                            "(default: the questions file); paragraphs are matched by position.")  # fmt: skip
        parser.add_argument("--model", default="local-e5-small", help="Embedding model key.")
        parser.add_argument("--limit", type=int, default=0, help="Use only the first N questions.")
        parser.add_argument("--baseline", action="store_true", help="Also run brute-force dense search.")
        parser.add_argument("--keep", action="store_true", help="Keep the benchmark knowledge base.")
        parser.add_argument("--json", action="store_true", help="End with one JSON line of the results.")

    def handle(self, *args, **options) -> None:
        paragraphs, questions = load_squad(options["squad"])
        if options["corpus"]:
            paragraphs, _ = load_squad(options["corpus"])
        if options["limit"]:
            questions = questions[: options["limit"]]
        if not questions or not paragraphs:
            raise CommandError("No questions or paragraphs found.")

        # SIGTERM exits through the finally below, so the knowledge base is deleted even then.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        knowledge_base = KnowledgeBase.objects.create(
            name=f"bench-retrieval-{int(time.time() * 1000)}", embedding_model=options["model"]
        )
        try:
            results = self._run(knowledge_base, paragraphs, questions, options)
        finally:
            if not options["keep"]:
                _delete(knowledge_base)
        for line in self._report(results):
            self.stdout.write(line)
        if options["json"]:
            self.stdout.write(json.dumps(results["hybrid"] | {"baseline": results.get("baseline")}))

    def _run(self, knowledge_base, paragraphs, questions, options) -> dict:
        celery_app.conf.task_always_eager = True
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)  # a line per eager task
        started = time.perf_counter()
        document_to_paragraph = {}
        for index, text in enumerate(paragraphs):
            # Saving the document runs its ingestion task (the real pipeline) on commit.
            document = services.document_create_from_text(
                knowledge_base=knowledge_base, title=f"Paragraph {index}", text=text
            )
            document.refresh_from_db()
            if document.status != Document.Status.READY:
                raise CommandError(f"paragraph {index} did not index: {document.error}")
            document_to_paragraph[document.pk] = index
        ingest_seconds = time.perf_counter() - started
        knowledge_base.refresh_from_db()

        embedder = get_embedder(options["model"])
        query_vectors, latencies, search_latencies = [], [], []
        ranked = []
        for question, _ in questions:
            started = time.perf_counter()
            query_vectors.append(embedder.embed_query(question).vectors[0])
            embed_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            result = retrieve(
                knowledge_base=knowledge_base, query=question, query_vector=query_vectors[-1], top_k=20
            )
            search_ms = (time.perf_counter() - started) * 1000
            latencies.append(embed_ms + search_ms)
            search_latencies.append(search_ms)
            order = []
            for hit in result.hits:
                paragraph = document_to_paragraph[hit.document_id]
                if paragraph not in order:
                    order.append(paragraph)
            ranked.append(order)
        expected = [index for _, index in questions]
        hybrid = metrics(ranked, expected) | {
            "p50_ms": round(statistics.median(latencies), 2),
            "p95_ms": round(percentile(latencies, 0.95), 2),
            "search_p50_ms": round(statistics.median(search_latencies), 2),
            "search_p95_ms": round(percentile(search_latencies, 0.95), 2),
            "questions": len(questions),
            "paragraphs": len(paragraphs),
            "ingest_seconds": round(ingest_seconds, 1),
            "model": options["model"],
        }
        results = {"hybrid": hybrid}
        if options["baseline"]:
            results["baseline"] = self._baseline(options["model"], paragraphs, questions, query_vectors)
        return results

    def _baseline(
        self,
        model: str,
        paragraphs: list[str],
        questions: list[tuple[str, int]],
        query_vectors: list[list[float]],
    ) -> dict:
        embedder = get_embedder(model)
        matrix = []
        for start in range(0, len(paragraphs), embedder.max_batch):
            matrix.extend(embedder.embed_documents(paragraphs[start : start + embedder.max_batch]).vectors)
        passages = np.asarray(matrix, dtype=np.float32)
        scores = np.asarray(query_vectors, dtype=np.float32) @ passages.T
        ranked = [[int(index) for index in np.argsort(-row)[:10]] for row in scores]
        return metrics(ranked, [index for _, index in questions])

    def _report(self, results: dict) -> list[str]:
        hybrid = results["hybrid"]
        lines = [
            f"{hybrid['questions']} questions over {hybrid['paragraphs']} paragraphs, "
            f"model {hybrid['model']}, indexed in {hybrid['ingest_seconds']} s",
            f"{'':<28}{'recall@1':>10}{'recall@5':>10}{'MRR@10':>10}",
            f"{'hybrid (this product)':<28}{hybrid['recall_at_1']:>10.3f}{hybrid['recall_at_5']:>10.3f}"
            f"{hybrid['mrr_at_10']:>10.3f}",
        ]
        if "baseline" in results:
            base = results["baseline"]
            lines.append(
                f"{'brute-force dense':<28}{base['recall_at_1']:>10.3f}{base['recall_at_5']:>10.3f}"
                f"{base['mrr_at_10']:>10.3f}"
            )
        lines.append(
            f"latency with query embedding p50 {hybrid['p50_ms']} ms, p95 {hybrid['p95_ms']} ms; "
            f"search only p50 {hybrid['search_p50_ms']} ms, p95 {hybrid['search_p95_ms']} ms"
        )
        return lines
