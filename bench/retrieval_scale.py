"""Hybrid retrieval at 100K chunks: latency, HNSW build time and size, HNSW recall@10.

    .venv/bin/python bench/retrieval_scale.py [--rows 100000] [--queries 1000] [--json]

Vectors come from real text: ~16K BANKING77 utterances and XQuAD sentences (English
and Vietnamese), embedded once with the local embedder and cached in var/bench-cache/.
The rest of the rows are normalised mixtures of two real vectors plus a little noise,
with the two sentences joined as their text, so full-text search sees real words and
nearest neighbours are not the near-ties random vectors give. Queries are the XQuAD
questions (both languages), embedded as queries; none is in the corpus.

Rows go straight into knowledge_chunk of a dedicated knowledge base with COPY, not
live, so the load does not pay for the partial HNSW index; then:
  1. one UPDATE makes them live: every row is inserted into the existing index one by
     one, which is what ingestion pays (the incremental cost);
  2. REINDEX INDEX CONCURRENTLY rebuilds it in bulk, which is what a restore, a new
     model's migration or a rebuild pays (the build time); CONCURRENTLY so other users
     of the database are never blocked.
Latency is of `knowledge.retrieval.retrieve` with `query_vector=` (no query embedding),
top 8. Recall@10 compares the product's vector search (HNSW, iterative scan, its
ef_search) with exact search in numpy over the same rows. The knowledge base is
deleted at the end and the index rebuilt again without its rows.
"""

import argparse
import csv
import hashlib
import json
import re
import statistics
import time

from common import EVAL, machine, percentile, print_machine, setup_django

setup_django()

import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from pgvector.psycopg import register_vector  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from knowledge import retrieval  # noqa: E402
from knowledge.embedding import get_embedder  # noqa: E402
from knowledge.models import Document, KnowledgeBase  # noqa: E402
from knowledge.textnorm import fold  # noqa: E402

MODEL = "local-e5-small"
INDEX = "knowledge_chunk_hnsw_local_e5_small"
CACHE = settings.VAR_DIR / "bench-cache"
CHUNKS_PER_DOCUMENT = 1000
TOP_K = 8
RECALL_AT = 10
WARMUP_QUERIES = 50
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000, help="XQuAD questions to time (max 2,380).")
    parser.add_argument("--json", action="store_true", help="End with one JSON line of the results.")
    options = parser.parse_args()

    texts, queries = real_texts(), xquad_questions()
    vectors = cached_embeddings("passages", texts, lambda batch: embedder().embed_documents(batch).vectors)
    query_vectors = cached_embeddings("queries", queries, embed_queries)
    rows_text, rows_vectors = corpus(texts, vectors, options.rows)
    picked = np.random.default_rng(1).permutation(len(queries))[: options.queries]

    running = KnowledgeBase.objects.filter(name__startswith="bench-scale-").first()
    if running:
        # Two runs would time each other and their index rebuilds can deadlock.
        raise SystemExit(f"{running.name} exists: another run is going on (or crashed); one at a time")
    knowledge_base = KnowledgeBase.objects.create(
        name=f"bench-scale-{int(time.time() * 1000)}", embedding_model=MODEL
    )
    results: dict = {"rows": options.rows, "real_vectors": len(texts), "queries": len(picked)}
    # Its own connection, in autocommit: REINDEX CONCURRENTLY and VACUUM refuse to run in
    # a transaction, and the binary COPY needs pgvector's adapter, which Django's must not get.
    with psycopg.connect(settings.DATABASE_URL, autocommit=True) as admin:
        register_vector(admin)
        try:
            ids = load(admin, knowledge_base, rows_text, rows_vectors, results)
            build(admin, knowledge_base, results)
            picked_queries = [queries[i] for i in picked]
            measure(knowledge_base, ids, rows_vectors, picked_queries, query_vectors[picked], results)
        finally:
            cleanup(admin, knowledge_base)
    results["machine"] = machine()
    report(results)
    if options.json:
        print(json.dumps(results))


def real_texts() -> list[str]:
    """BANKING77 utterances and the sentences of the XQuAD paragraphs, de-duplicated, in file order."""
    texts: list[str] = []
    for name in ("train", "test"):
        with open(EVAL / "banking77" / f"{name}.csv", encoding="utf-8", newline="") as handle:
            texts.extend(row["text"].strip() for row in csv.DictReader(handle))
    for language in ("en", "vi"):
        for paragraph in _xquad(language)["paragraphs"]:
            texts.extend(part.strip() for part in _SENTENCE_BREAK.split(paragraph) if part.strip())
    return list(dict.fromkeys(text for text in texts if text))


def xquad_questions() -> list[str]:
    return [question for language in ("en", "vi") for question in _xquad(language)["questions"]]


def _xquad(language: str) -> dict[str, list[str]]:
    data = json.loads((EVAL / "xquad" / f"xquad.{language}.json").read_text(encoding="utf-8"))["data"]
    paragraphs = [paragraph for article in data for paragraph in article["paragraphs"]]
    return {
        "paragraphs": [paragraph["context"] for paragraph in paragraphs],
        "questions": [qa["question"] for paragraph in paragraphs for qa in paragraph["qas"]],
    }


def embedder():
    return get_embedder(MODEL)


def embed_queries(batch: list[str]) -> list[list[float]]:
    return [embedder().embed_query(text).vectors[0] for text in batch]


def cached_embeddings(kind: str, texts: list[str], embed) -> np.ndarray:
    """Embeddings of `texts`, from var/bench-cache/ when the same texts were embedded before."""
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"{MODEL}-{kind}-{digest}.npy"
    if path.exists():
        return np.load(path)
    print(f"embedding {len(texts):,} {kind} with {MODEL} (cached in {path.parent} for the next run)")
    started = time.perf_counter()
    matrix = []
    for start in range(0, len(texts), 64):
        matrix.extend(embed(texts[start : start + 64]))
    array = np.asarray(matrix, dtype=np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    print(f"  {time.perf_counter() - started:.0f} s")
    return array


def corpus(texts: list[str], vectors: np.ndarray, rows: int) -> tuple[list[str], np.ndarray]:
    """The real rows, then normalised mixtures a + w*b + noise of two real ones, texts joined."""
    rng = np.random.default_rng(0)
    real = min(rows, len(texts))
    extra = rows - real
    first = rng.integers(0, len(texts), extra)
    second = rng.integers(0, len(texts), extra)
    weights = rng.uniform(0.2, 0.8, (extra, 1)).astype(np.float32)
    # Noise of norm ~0.1 per vector: mixtures stay distinct instead of piling up on
    # the popular real vectors, and keep the real vectors' anisotropic geometry.
    noise = rng.normal(0, 0.1 / np.sqrt(vectors.shape[1]), (extra, vectors.shape[1])).astype(np.float32)
    mixed = vectors[first] + weights * vectors[second] + noise
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    all_vectors = np.concatenate([vectors[:real], mixed])
    all_texts = texts[:real] + [f"{texts[a]} {texts[b]}" for a, b in zip(first, second, strict=True)]
    return all_texts, all_vectors


def load(
    admin: psycopg.Connection,
    knowledge_base: KnowledgeBase,
    texts: list[str],
    vectors: np.ndarray,
    results: dict,
) -> list[int]:
    """COPY the rows in, not live; returns the chunk ids in row order."""
    now = timezone.now()
    documents = Document.objects.bulk_create(
        Document(
            knowledge_base=knowledge_base,
            title=f"bench {number}",
            source=Document.Source.TEXT,
            status=Document.Status.READY,
            live_version=1,
            status_changed_at=now,
            indexed_at=now,
        )
        for number in range(-(-len(texts) // CHUNKS_PER_DOCUMENT))
    )
    columns = (
        "knowledge_base_id, document_id, document_version, position, text, heading_path, "
        "token_count, content_hash, embedding_model, embedding, is_live, search_text"
    )
    types = ["int8", "int8", "int4", "int4", "text", "jsonb", "int4", "varchar", "varchar",
             "vector", "bool", "text"]  # fmt: skip
    started = time.perf_counter()
    copy_sql = f"COPY knowledge_chunk ({columns}) FROM STDIN WITH (FORMAT BINARY)"
    with admin.transaction(), admin.cursor() as cursor, cursor.copy(copy_sql) as copy:
        copy.set_types(types)
        for row, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
            document = documents[row // CHUNKS_PER_DOCUMENT]
            copy.write_row(
                (
                    knowledge_base.pk,
                    document.pk,
                    1,
                    row % CHUNKS_PER_DOCUMENT,
                    text,
                    Jsonb([]),
                    len(text.split()),
                    hashlib.sha256(text.encode()).hexdigest(),
                    MODEL,
                    vector,
                    False,
                    fold(text),
                )
            )
    results["copy_seconds"] = round(time.perf_counter() - started, 1)
    order = {document.pk: number for number, document in enumerate(documents)}
    ids = [0] * len(texts)
    rows = admin.execute(
        "SELECT id, document_id, position FROM knowledge_chunk WHERE knowledge_base_id = %s",
        [knowledge_base.pk],
    )
    for chunk_id, document_id, position in rows:
        ids[order[document_id] * CHUNKS_PER_DOCUMENT + position] = chunk_id
    return ids


def build(admin: psycopg.Connection, knowledge_base: KnowledgeBase, results: dict) -> None:
    notices: list[str] = []
    admin.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
    with admin.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(
            "UPDATE knowledge_chunk SET is_live = true WHERE knowledge_base_id = %s", [knowledge_base.pk]
        )
        results["live_flip_seconds"] = round(time.perf_counter() - started, 1)
        cursor.execute("SELECT count(*) FROM knowledge_chunk WHERE embedding_model = %s AND is_live", [MODEL])
        results["index_rows"] = cursor.fetchone()[0]
        cursor.execute(
            "SELECT current_setting('maintenance_work_mem'), "
            "current_setting('max_parallel_maintenance_workers')"
        )
        results["maintenance_work_mem"], results["parallel_maintenance_workers"] = cursor.fetchone()
        started = time.perf_counter()
        cursor.execute(f"REINDEX INDEX CONCURRENTLY {INDEX}")
        results["index_build_seconds"] = round(time.perf_counter() - started, 1)
        cursor.execute("VACUUM ANALYZE knowledge_chunk")  # the flip left 100K dead row versions
        cursor.execute(
            "SELECT pg_relation_size(%s::regclass), current_setting('shared_buffers'), "
            "pg_size_bytes(current_setting('shared_buffers'))",
            [INDEX],
        )
        size, shared_buffers, shared_buffers_bytes = cursor.fetchone()
    results["index_bytes"] = size
    results["index_mb"] = round(size / 2**20, 1)
    results["shared_buffers"] = shared_buffers
    results["index_fits_shared_buffers"] = size < shared_buffers_bytes
    # pgvector says when the graph outgrew maintenance_work_mem and the build went on disk.
    results["build_notices"] = [notice for notice in notices if "hnsw" in notice.lower()]


def measure(
    knowledge_base: KnowledgeBase,
    ids: list[int],
    vectors: np.ndarray,
    queries: list[str],
    query_vectors: np.ndarray,
    results: dict,
) -> None:
    knowledge_base.refresh_from_db()
    for query, vector in zip(queries[:WARMUP_QUERIES], query_vectors, strict=False):
        retrieval.retrieve(knowledge_base=knowledge_base, query=query, query_vector=vector.tolist())

    totals, parts = [], {"vector": [], "keyword": [], "fuse": []}
    for query, vector in zip(queries, query_vectors, strict=True):
        started = time.perf_counter()
        result = retrieval.retrieve(
            knowledge_base=knowledge_base, query=query, query_vector=vector.tolist(), top_k=TOP_K
        )
        totals.append((time.perf_counter() - started) * 1000)
        for name, values in parts.items():
            values.append(result.timings_ms[name])
    results["latency_ms"] = {
        "p50": _round(statistics.median(totals)),
        "p95": _round(percentile(totals, 0.95)),
    }
    for name, values in parts.items():
        results["latency_ms"][f"{name}_p50"] = _round(statistics.median(values))
        results["latency_ms"][f"{name}_p95"] = _round(percentile(values, 0.95))

    # Exact top 10 by cosine (vectors are unit length) against the product's HNSW search.
    exact = np.argsort(-(query_vectors @ vectors.T), axis=1)[:, :RECALL_AT]
    row_of = {chunk_id: row for row, chunk_id in enumerate(ids)}
    found = 0
    for vector, truth in zip(query_vectors, exact, strict=True):
        with transaction.atomic(), connection.cursor() as cursor:
            rows = retrieval._vector_search(
                cursor, knowledge_base.pk, MODEL, vector.tolist(), max(retrieval.CANDIDATES, TOP_K * 3)
            )
        approximate = {row_of[chunk_id] for chunk_id, _ in rows[:RECALL_AT]}
        found += len(approximate & set(truth.tolist()))
    results["hnsw_recall_at_10"] = round(found / (RECALL_AT * len(queries)), 4)
    results["ef_search"] = max(retrieval.EF_SEARCH, retrieval.CANDIDATES)


def cleanup(admin: psycopg.Connection, knowledge_base: KnowledgeBase) -> None:
    started = time.perf_counter()
    knowledge_base.delete()
    # A REINDEX CONCURRENTLY that failed (interrupted, deadlocked) leaves an invalid
    # copy that every write would still maintain.
    admin.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}_ccnew")
    # Rebuilt without the deleted rows the index is small again, in milliseconds, so a
    # plain REINDEX (brief lock, all or nothing); vacuuming 100K dead entries out of
    # an HNSW graph would take far longer.
    admin.execute(f"REINDEX INDEX {INDEX}")
    print(f"cleaned up in {time.perf_counter() - started:.1f} s")


def _round(value: float) -> float:
    return round(value, 2)


def report(results: dict) -> None:
    print_machine(results["machine"])
    latency = results["latency_ms"]
    print(
        f"{results['rows']:,} chunks ({results['real_vectors']:,} real-text vectors), "
        f"{results['queries']:,} queries, top {TOP_K}"
    )
    print(f"  COPY load (not live)          {results['copy_seconds']} s")
    print(f"  make live (incremental HNSW)  {results['live_flip_seconds']} s")
    print(
        f"  HNSW bulk build (REINDEX)     {results['index_build_seconds']} s for "
        f"{results['index_rows']:,} rows, maintenance_work_mem {results['maintenance_work_mem']}, "
        f"{results['parallel_maintenance_workers']} parallel workers"
    )
    for notice in results["build_notices"]:
        print(f"    pgvector: {notice}")
    print(
        f"  HNSW index size               {results['index_mb']} MB "
        f"(shared_buffers {results['shared_buffers']}, fits: {results['index_fits_shared_buffers']})"
    )
    print(f"  hybrid latency                p50 {latency['p50']} ms, p95 {latency['p95']} ms")
    for name in ("vector", "keyword", "fuse"):
        print(f"    {name:<28}p50 {latency[name + '_p50']} ms, p95 {latency[name + '_p95']} ms")
    recall = results["hnsw_recall_at_10"]
    print(f"  HNSW recall@10 vs exact       {recall} (ef_search {results['ef_search']})")


if __name__ == "__main__":
    main()
