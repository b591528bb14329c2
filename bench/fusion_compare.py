"""Fusion methods compared on the same XQuAD candidate lists.

    .venv/bin/python bench/fusion_compare.py vi      (or en)

Indexes the XQuAD paragraphs once through the real pipeline, collects the vector and
keyword candidate lists of every question from the retrieval service's own searches,
then scores dense-only, reciprocal rank fusion variants and the shipped weighted
combination on exactly the same lists. Deletes its knowledge base at the end.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import setup_django

setup_django()

from django.db import connection, transaction  # noqa: E402

from config.celery import app as celery_app  # noqa: E402
from knowledge import retrieval, services  # noqa: E402
from knowledge.embedding import get_embedder  # noqa: E402
from knowledge.management.commands.bench_retrieval import load_squad, metrics  # noqa: E402
from knowledge.models import Chunk, KnowledgeBase  # noqa: E402

MODEL = "local-e5-small"
EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "xquad"


def rrf(vector_rows, keyword_rows, *, k: int, keyword_weight: float) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for rank, (item, _) in enumerate(vector_rows, 1):
        scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    for rank, (item, _) in enumerate(keyword_rows, 1):
        scores[item] = scores.get(item, 0.0) + keyword_weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])[:20]


def main(language: str) -> None:
    paragraphs, questions = load_squad(EVAL / f"xquad.{language}.json")
    # Ingestion runs here, as the task would: a worker on the shared broker must not take it.
    celery_app.conf.task_always_eager = True
    knowledge_base = KnowledgeBase.objects.create(name=f"bench-fusion-{language}", embedding_model=MODEL)
    try:
        paragraph_of_document = {}
        for index, text in enumerate(paragraphs):
            document = services.document_create_from_text(
                knowledge_base=knowledge_base, title=f"P{index}", text=text
            )
            paragraph_of_document[document.pk] = index
        paragraph_of_chunk = {
            chunk: paragraph_of_document[document]
            for chunk, document in Chunk.objects.filter(knowledge_base=knowledge_base).values_list(
                "pk", "document_id"
            )
        }
        embedder = get_embedder(MODEL)
        candidates = []
        for question, _ in questions:
            vector = embedder.embed_query(question).vectors[0]
            with transaction.atomic(), connection.cursor() as cursor:
                vector_rows = retrieval._vector_search(cursor, knowledge_base.pk, MODEL, vector, 40)
                keyword_rows = retrieval._keyword_search(cursor, knowledge_base.pk, MODEL, question, 40)
            candidates.append((vector_rows, keyword_rows))
        expected = [index for _, index in questions]

        def paragraphs_of(fused) -> list[int]:
            order: list[int] = []
            for chunk, _ in fused:
                if paragraph_of_chunk[chunk] not in order:
                    order.append(paragraph_of_chunk[chunk])
            return order

        methods = {
            "dense only": lambda vector_rows, keyword_rows: vector_rows,
            "RRF k=60": lambda v, kw: rrf(v, kw, k=60, keyword_weight=1.0),
            "RRF k=5, keyword 0.7": lambda v, kw: rrf(v, kw, k=5, keyword_weight=0.7),
            "weighted sum (shipped)": lambda v, kw: retrieval.combine(v, kw, top_k=20),
        }
        for name, method in methods.items():
            ranked = [paragraphs_of(method(v, kw)) for v, kw in candidates]
            print(f"{language} {name:<24} {metrics(ranked, expected)}")
    finally:
        knowledge_base.delete()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "vi")
