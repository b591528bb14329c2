"""Hybrid retrieval: pgvector nearest neighbours + PostgreSQL full text, score fusion.

Both searches only see live chunks (enabled documents, their swapped-in version) of
one knowledge base and its serving embedding model. The vector search uses the
model's partial HNSW index with iterative scans, so filtering never returns fewer
than k rows while more exist. Keyword search runs on folded text (no case, no
diacritics) with the `simple` configuration: "gio mo cua" finds "giờ mở cửa", and
no English stemmer touches Vietnamese. The two candidate lists are merged by a
weighted sum of their min-max normalised scores (see `combine`).
"""

import contextlib
import json
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import connection, connections
from django.db.backends.utils import CursorWrapper

from knowledge.embedding import get_embedder
from knowledge.embedding.registry import EMBEDDING_DIMENSIONS
from knowledge.models import KnowledgeBase
from knowledge.textnorm import query_terms

# Candidates from each search; also the list min-max normalisation runs over, so it
# does not grow with top_k (scores would shift with the caller's top_k otherwise).
CANDIDATES = 40
EF_SEARCH = 100
# Share of the vector similarity in the combined score; the rest is keyword evidence,
# weaker because ts_rank has no inverse document frequency. On XQuAD, both languages,
# 0.6 and 0.7 beat dense search alone on every metric (docs/benchmarks.md).
VECTOR_WEIGHT = 0.7
# Cosine similarities within 0.1 of each other are no confident order: min-max over a
# flat list (a query typed without diacritics scores about the same against every
# chunk) would stretch a 0.02 gap to the whole 0..1 scale and drown the keyword
# evidence. 0.1 is about the typical spread of the top 40 on XQuAD.
VECTOR_MIN_SPAN = 0.1
# Keyword search matches on the rarest query words only, while their matches add up
# to about this many rows, and ranks by all of them. Ranking reads every matched row,
# so an OR of common words ("the", "cua") ranked most of a 100K-chunk table (120 ms);
# the rare words carry the keyword evidence anyway, as inverse document frequency
# would say. Small tables match on every word.
KEYWORD_MATCH_ROWS = 1000
COMMON_TERMS_TTL_SECONDS = 300.0
# The keyword search runs beside the vector search on a connection of its own, so a
# query waits for the slower of the two rather than their sum. Threads (each keeps
# one connection) per process: searches at once beyond this wait for a free one.
KEYWORD_THREADS = 2

_common_terms: tuple[float, dict[str, float]] = (-COMMON_TERMS_TTL_SECONDS, {})


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: int
    document_title: str
    heading_path: list[str]
    text: str
    position: int
    fused_score: float  # the combined score, 0..1
    vector_score: float | None  # cosine similarity, when found by the vector search
    keyword_score: float | None  # ts_rank, when found by the keyword search
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

    started = time.perf_counter()
    with connection.cursor() as cursor:
        search = _search(cursor, knowledge_base.pk, model, query_vector, query, max(CANDIDATES, top_k))
    timings["search"] = _ms(started)
    timings["vector"] = search.vector_ms
    timings["keyword"] = (
        search.keyword_ms
        if search.keyword_ms is not None
        # In line, after the vector search in the same round trip: the rest of it.
        else (round(max(timings["search"] - search.vector_ms, 0.0), 2))
    )

    started = time.perf_counter()
    fused = combine(search.vector_rows, search.keyword_rows, top_k=top_k)
    vector_scores = _ranked(search.vector_rows)
    keyword_scores = _ranked(search.keyword_rows)
    hits = []
    for chunk_id, score in fused:
        document_id, title, heading_path, text, position = search.details[chunk_id]
        vector_rank, vector_score = vector_scores.get(chunk_id, (None, None))
        keyword_rank, keyword_score = keyword_scores.get(chunk_id, (None, None))
        hits.append(
            Hit(
                chunk_id=chunk_id,
                document_id=document_id,
                document_title=title,
                # Django reads jsonb as text; only the hits' headings are worth parsing.
                heading_path=json.loads(heading_path) if isinstance(heading_path, str) else heading_path,
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
    # The two searches overlap: their own times are parts of "search", not addends.
    timings["total"] = round(timings.get("embed", 0.0) + timings["search"] + timings["fuse"], 2)
    return RetrievalResult(
        hits=hits,
        timings_ms=timings,
        knowledge_base_version=knowledge_base.version,
        embedding_model=model,
    )


def combine(
    vector_rows: list[tuple[int, float]],
    keyword_rows: list[tuple[int, float]],
    *,
    top_k: int,
    vector_weight: float = VECTOR_WEIGHT,
) -> list[tuple[int, float]]:
    """Convex combination of min-max normalised scores; an item missing from a list scores 0 there.

    Not reciprocal rank fusion: ranks throw the score gaps away, so a chunk the vector
    search puts first by a wide margin lost to one both searches put eighth, and RRF
    fell below dense search alone on XQuAD (Bruch et al. 2023, "An Analysis of Fusion
    Functions for Hybrid Retrieval", find the same).
    """
    vector = _min_max(vector_rows, min_span=VECTOR_MIN_SPAN)
    keyword = _min_max(keyword_rows)
    scores = {
        item: vector_weight * vector.get(item, 0.0) + (1 - vector_weight) * keyword.get(item, 0.0)
        for item in vector.keys() | keyword.keys()
    }
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))[:top_k]


def _ranked(rows: list[tuple[int, float]]) -> dict[int, tuple[int, float]]:
    return {chunk_id: (rank, score) for rank, (chunk_id, score) in enumerate(rows, 1)}


def _min_max(rows: list[tuple[int, float]], *, min_span: float = 0.0) -> dict[int, float]:
    if not rows:
        return {}
    high = max(score for _, score in rows)
    low = min(score for _, score in rows)
    span = max(high - low, min_span)
    return {item: (score - low) / span if span else 1.0 for item, score in rows}


@dataclass
class _Search:
    vector_rows: list[tuple[int, float]]  # (chunk id, cosine similarity), nearest first
    keyword_rows: list[tuple[int, float]]  # (chunk id, ts_rank), best first
    details: dict[int, tuple]  # chunk id -> (document id, title, heading_path, text, position)
    vector_ms: float  # server time until the vector search's last row
    keyword_ms: float | None  # the keyword search's own time when it ran beside the vector search


# iterative_scan: filtering (knowledge base, is_live) never returns fewer than k rows
# while more exist. set_config(..., true) is SET LOCAL: it ends with the transaction.
_SETTINGS_SQL = (
    "SELECT set_config('hnsw.iterative_scan', 'strict_order', true), "
    "set_config('hnsw.ef_search', %(ef)s, true)"
)

# Any term may match (OR). ts_rank counts the query words a chunk holds, divided by
# 1 + log(length) (normalisation 1). Not ts_rank_cd: its cover density rewards any
# two query words side by side, so chunks with frequent words next to each other
# outranked the one holding the rare word asked about (XQuAD keyword recall@1 fell
# from 0.83-0.88 to 0.32-0.49). Terms are folded words (\w+): the tsquery cannot break.
_KEYWORD_SQL = """
    SELECT id, ts_rank(search_vector, ranked, 1) AS rank
    FROM knowledge_chunk, to_tsquery('simple', %(matched)s) AS matched,
         to_tsquery('simple', %(ranked)s) AS ranked
    WHERE search_vector @@ matched AND is_live
      AND knowledge_base_id = %(kb)s AND embedding_model = %(model)s
    ORDER BY rank DESC, id
    LIMIT %(limit)s
"""


def _vector_sql(dimensions: int, *, details: bool) -> str:
    # The expression and the model literal must match the partial index exactly (see
    # the migrations); the dimension is an integer from our own registry. ORDER BY the
    # output column: the query vector is inlined (client-side binding), and once is
    # enough to parse.
    columns = (
        # Per row, as rows leave the index scan: the last one's is the search's time.
        ", 1000 * extract(epoch FROM clock_timestamp() - statement_timestamp())::float8, chunk.document_id, "
        "(SELECT title FROM knowledge_document WHERE id = chunk.document_id), "
        "chunk.heading_path, chunk.text, chunk.position"
        if details
        else ""
    )
    return f"""
        SELECT chunk.id,
            chunk.embedding::vector({dimensions}) <=> %(vector)s::vector({dimensions}) AS distance {columns}
        FROM knowledge_chunk AS chunk
        WHERE chunk.embedding_model = %(model)s AND chunk.is_live AND chunk.knowledge_base_id = %(kb)s
        ORDER BY distance
        LIMIT %(limit)s
    """


# Details joined after the LIMIT: only the candidates' rows are read again.
_KEYWORD_DETAILS_SQL = f"""
    SELECT found.id, found.rank, chunk.document_id, document.title, chunk.heading_path, chunk.text,
           chunk.position
    FROM ({_KEYWORD_SQL}) AS found
    JOIN knowledge_chunk AS chunk ON chunk.id = found.id
    JOIN knowledge_document AS document ON document.id = chunk.document_id
    ORDER BY found.rank DESC, found.id
"""


def _search(
    cursor: CursorWrapper, knowledge_base_id: int, model: str, vector: list[float], query: str, limit: int
) -> _Search:
    """Both searches with their candidates' details: the vector search in one round trip, the
    keyword search beside it on another connection (or in the same round trip, in line).

    Several statements in one message (Django's psycopg cursor binds parameters on the
    client, so it sends them as one simple query): PostgreSQL runs them as one implicit
    transaction, which the local HNSW settings last for.
    """
    terms = query_terms(query)
    params = _params(cursor, knowledge_base_id, model, vector, terms, limit)
    statements = [_SETTINGS_SQL, _vector_sql(EMBEDDING_DIMENSIONS[model], details=True)]
    beside: Future | None = None
    if terms and not connection.in_atomic_block:
        beside = _keyword_pool().submit(_keyword_on_own_connection, params)
    elif terms:
        # Another connection would not see what this transaction wrote.
        statements.append(_KEYWORD_DETAILS_SQL)
    cursor.execute(";".join(statements), params)
    cursor.nextset()  # past the settings
    vector_found = cursor.fetchall()
    keyword_found, keyword_ms = [], None
    if beside is not None:
        keyword_found, keyword_ms = beside.result()
    elif terms:
        cursor.nextset()
        keyword_found = cursor.fetchall()
    details = {row[0]: row[2:] for row in keyword_found}
    details.update((row[0], row[3:]) for row in vector_found)
    return _Search(
        vector_rows=[(row[0], 1 - row[1]) for row in vector_found],
        keyword_rows=[(row[0], row[1]) for row in keyword_found],
        details=details,
        vector_ms=round(vector_found[-1][2], 2) if vector_found else 0.0,
        keyword_ms=keyword_ms,
    )


def _keyword_on_own_connection(params: dict[str, object]) -> tuple[list[tuple], float]:
    """The keyword search with details, on this pool thread's own connection; (rows, ms)."""
    started = time.perf_counter()
    own = connections["default"]
    own.close_if_unusable_or_obsolete()  # a dropped or aged connection is reopened
    with own.cursor() as cursor:
        cursor.execute(_KEYWORD_DETAILS_SQL, params)
        rows = cursor.fetchall()
    return rows, _ms(started)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _keyword_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=KEYWORD_THREADS, thread_name_prefix="keyword-search")
        return _pool


def keyword_pool_shutdown() -> None:
    """Close the pool threads' connections and stop them (e.g. before a test database is dropped)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is None:
        return
    # Each thread closes its own connection; a barrier makes every thread take one task.
    barrier = threading.Barrier(KEYWORD_THREADS)

    def close() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        connections.close_all()

    for _ in range(KEYWORD_THREADS):
        pool.submit(close)
    pool.shutdown(wait=True)


def _forget_pool_in_child() -> None:
    # A forked child (Celery's prefork pool) has none of the parent's threads.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


def _params(
    cursor: CursorWrapper,
    knowledge_base_id: int,
    model: str,
    vector: list[float],
    terms: list[str],
    limit: int,
) -> dict[str, object]:
    params: dict[str, object] = {
        "vector": vector_literal(vector),
        "model": model,
        "kb": knowledge_base_id,
        "limit": limit,
        "ef": str(max(EF_SEARCH, limit)),
    }
    if terms:
        params["matched"] = " | ".join(_rarest_terms(cursor, terms))
        params["ranked"] = " | ".join(terms)
    return params


def _vector_search(
    cursor: CursorWrapper, knowledge_base_id: int, model: str, vector: list[float], limit: int
) -> list[tuple[int, float]]:
    """The vector search alone, (chunk id, cosine similarity) nearest first; for the benchmarks."""
    sql = _SETTINGS_SQL + ";" + _vector_sql(EMBEDDING_DIMENSIONS[model], details=False)
    cursor.execute(sql, _params(cursor, knowledge_base_id, model, vector, [], limit))
    cursor.nextset()  # past the settings
    return [(chunk_id, 1 - distance) for chunk_id, distance in cursor.fetchall()]


def _keyword_search(
    cursor: CursorWrapper, knowledge_base_id: int, model: str, query: str, limit: int
) -> list[tuple[int, float]]:
    """The keyword search alone, (chunk id, ts_rank) best first; for the benchmarks."""
    terms = query_terms(query)
    if not terms:
        return []
    cursor.execute(_KEYWORD_SQL, _params(cursor, knowledge_base_id, model, [], terms, limit))
    return cursor.fetchall()


def _rarest_terms(cursor: CursorWrapper, terms: list[str]) -> list[str]:
    """The rarest terms whose matches add up to about KEYWORD_MATCH_ROWS rows; at least one."""
    common = _common_term_rows(cursor)
    chosen: list[str] = []
    total = 0.0
    for term in sorted(terms, key=lambda term: common.get(term, 0.0)):
        total += common.get(term, 0.0)
        if chosen and total > KEYWORD_MATCH_ROWS:
            break
        chosen.append(term)
    return chosen


def _common_term_rows(cursor: CursorWrapper) -> dict[str, float]:
    """Estimated rows holding each of the table's most common terms, re-read every few minutes.

    PostgreSQL's own statistics of search_vector: the most common lexemes and their
    frequencies, which ANALYZE (autovacuum) keeps for the planner's row estimates. A
    term not listed is rarer than every listed one and counts as 0 rows. Reading them
    costs about a millisecond, so they are cached; they only change on ANALYZE anyway.
    """
    global _common_terms
    fetched_at, rows = _common_terms
    if time.monotonic() - fetched_at < COMMON_TERMS_TTL_SECONDS:
        return rows
    cursor.execute(
        """
        SELECT common.term, common.frequency * greatest(class.reltuples, 0)
        FROM pg_stats AS stats
        JOIN pg_class AS class ON class.oid = 'knowledge_chunk'::regclass
        CROSS JOIN LATERAL unnest(stats.most_common_elems::text::text[], stats.most_common_elem_freqs)
            AS common(term, frequency)
        WHERE stats.schemaname = current_schema() AND stats.tablename = 'knowledge_chunk'
          AND stats.attname = 'search_vector' AND common.term IS NOT NULL
        """
    )
    rows = dict(cursor.fetchall())
    _common_terms = (time.monotonic(), rows)
    return rows


def vector_literal(vector: list[float]) -> str:
    """A vector as pgvector's text input, for parameterised SQL (7 significant digits: float4)."""
    return "[" + ",".join(f"{float(value):.7g}" for value in vector) + "]"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
