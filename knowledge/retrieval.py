"""Hybrid retrieval: pgvector nearest neighbours + PostgreSQL full text, fused by RRF.

Both searches only see live chunks (enabled documents, their swapped-in version) of
one knowledge base and its serving embedding model. The vector search uses the
model's partial HNSW index with iterative scans, so filtering never returns fewer
than k rows while more exist. Keyword search runs on folded text (no case, no
diacritics) with the `simple` configuration: "gio mo cua" finds "giờ mở cửa", and
no English stemmer touches Vietnamese.
"""

import time
from dataclasses import dataclass, field

from django.db import connection, transaction

from knowledge.embedding import get_embedder
from knowledge.embedding.registry import EMBEDDING_DIMENSIONS
from knowledge.models import KnowledgeBase
from knowledge.textnorm import query_terms

RRF_K = 60
CANDIDATES = 40
EF_SEARCH = 100


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: int
    document_title: str
    heading_path: list[str]
    text: str
    position: int
    fused_score: float
    vector_score: float | None  # cosine similarity, when found by the vector search
    keyword_score: float | None  # ts_rank_cd, when found by the keyword search
    vector_rank: int | None
    keyword_rank: int | None

    @property
    def heading(self) -> str:
        return " > ".join(self.heading_path)


@dataclass
class RetrievalResult:
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    knowledge_base_version: int = 0
    embedding_model: str = ""


def retrieve(
    *,
    knowledge_base: KnowledgeBase,
    query: str,
    top_k: int = 8,
    query_vector: list[float] | None = None,
) -> RetrievalResult:
    timings: dict[str, float] = {}
    model = knowledge_base.embedding_model
    if query_vector is None:
        started = time.perf_counter()
        query_vector = get_embedder(model).embed_query(query).vectors[0]
        timings["embed"] = _ms(started)

    candidates = max(CANDIDATES, top_k * 3)
    with transaction.atomic(), connection.cursor() as cursor:
        started = time.perf_counter()
        vector_rows = _vector_search(cursor, knowledge_base.pk, model, query_vector, candidates)
        timings["vector"] = _ms(started)
        started = time.perf_counter()
        keyword_rows = _keyword_search(cursor, knowledge_base.pk, model, query, candidates)
        timings["keyword"] = _ms(started)

    started = time.perf_counter()
    fused = fuse(
        [chunk_id for chunk_id, _ in vector_rows], [chunk_id for chunk_id, _ in keyword_rows], top_k=top_k
    )
    details = _chunk_details([chunk_id for chunk_id, _ in fused])
    vector_scores = {chunk_id: (rank, score) for rank, (chunk_id, score) in enumerate(vector_rows, 1)}
    keyword_scores = {chunk_id: (rank, score) for rank, (chunk_id, score) in enumerate(keyword_rows, 1)}
    hits = []
    for chunk_id, score in fused:
        if chunk_id not in details:
            continue  # deleted between the searches and now
        document_id, title, heading_path, text, position = details[chunk_id]
        vector_rank, vector_score = vector_scores.get(chunk_id, (None, None))
        keyword_rank, keyword_score = keyword_scores.get(chunk_id, (None, None))
        hits.append(
            Hit(
                chunk_id=chunk_id,
                document_id=document_id,
                document_title=title,
                heading_path=heading_path,
                text=text,
                position=position,
                fused_score=score,
                vector_score=vector_score,
                keyword_score=keyword_score,
                vector_rank=vector_rank,
                keyword_rank=keyword_rank,
            )
        )
    timings["fuse"] = _ms(started)
    timings["total"] = round(sum(timings.values()), 2)
    return RetrievalResult(
        hits=hits,
        timings_ms=timings,
        knowledge_base_version=knowledge_base.version,
        embedding_model=model,
    )


def fuse(*rankings: list[int], top_k: int, k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: sum of 1 / (k + rank) over the rankings an item is in."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))[:top_k]


def _vector_search(cursor, knowledge_base_id: int, model: str, vector: list[float], limit: int):
    dimensions = EMBEDDING_DIMENSIONS[model]
    # The expression and the model literal must match the partial index exactly
    # (see the migrations); the dimension is an integer from our own registry.
    cursor.execute("SET LOCAL hnsw.iterative_scan = strict_order")
    cursor.execute("SET LOCAL hnsw.ef_search = %s", [max(EF_SEARCH, limit)])
    cursor.execute(
        f"""
        SELECT id, 1 - (embedding::vector({dimensions}) <=> %(vector)s::vector({dimensions}))
        FROM knowledge_chunk
        WHERE embedding_model = %(model)s AND is_live AND knowledge_base_id = %(kb)s
        ORDER BY embedding::vector({dimensions}) <=> %(vector)s::vector({dimensions})
        LIMIT %(limit)s
        """,
        {"vector": _vector_literal(vector), "model": model, "kb": knowledge_base_id, "limit": limit},
    )
    return cursor.fetchall()


def _keyword_search(cursor, knowledge_base_id: int, model: str, query: str, limit: int):
    terms = query_terms(query)
    if not terms:
        return []
    # Any term may match (OR); ts_rank_cd rewards chunks where several terms occur
    # close together. Terms are folded words (\w+), so the tsquery cannot be broken.
    tsquery = " | ".join(terms)
    cursor.execute(
        """
        SELECT id, ts_rank_cd(search_vector, query, 1) AS rank
        FROM knowledge_chunk, to_tsquery('simple', %(tsquery)s) AS query
        WHERE search_vector @@ query AND is_live
          AND knowledge_base_id = %(kb)s AND embedding_model = %(model)s
        ORDER BY rank DESC, id
        LIMIT %(limit)s
        """,
        {"tsquery": tsquery, "kb": knowledge_base_id, "model": model, "limit": limit},
    )
    return cursor.fetchall()


def _chunk_details(chunk_ids: list[int]) -> dict[int, tuple]:
    if not chunk_ids:
        return {}
    from knowledge.models import Chunk

    rows = Chunk.objects.filter(pk__in=chunk_ids).values_list(
        "pk", "document_id", "document__title", "heading_path", "text", "position"
    )
    return {row[0]: row[1:] for row in rows}


def _vector_literal(vector) -> str:
    return "[" + ",".join(f"{float(value):.7g}" for value in vector) + "]"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
