"""The answer cache: serve an earlier answer again when the same question comes back.

Two ways to hit, both per bot, language and embedding model:

- exact: the question folded (case, diacritics, punctuation, spacing: "Giờ mở cửa?" and
  "gio mo cua" are one question), hashed, looked up in Redis, then in PostgreSQL when
  Redis has lost the key or is down;
- semantic: the nearest cached question by cosine similarity of the query embeddings,
  at or above the bot's `cache_similarity`, brute force in PostgreSQL (a bot has
  thousands of entries, not millions).

An entry remembers the knowledge base version and the documents (id -> live version)
its answer came from. It is served only while every one of those documents still
serves that version and is enabled; a knowledge base whose version has not moved
since the entry was stored changed nothing, so the common case needs no document
check. Invalid entries are deleted when found. Follow-ups that lean on the
conversation and questions about one customer's own order or account are never
cached (`is_cacheable_question`).

Redis is an accelerator, never a dependency: when it is down, lookups fall through to
PostgreSQL and hit counters go straight to the row.
"""

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone
from django_redis import get_redis_connection
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisError

from chatbot.models import AnswerCacheEntry, Bot
from knowledge.embedding.registry import EMBEDDING_DIMENSIONS
from knowledge.models import KnowledgeBase
from knowledge.retrieval import vector_literal
from knowledge.selectors import document_live_versions
from knowledge.textnorm import fold

logger = logging.getLogger(__name__)

# A semantic hit needs more than one cosine score: on BANKING77 no threshold keeps
# wrong hits near 1% at a useful hit rate (docs/benchmarks.md). So the nearest
# cached question answers only if every cached question within AGREEMENT_MARGIN of
# it carries the same answer (cites the same sources): where two answers are about
# as close, the question sits between two intents and the cache stays out of it.
# 0.04, chosen on a split of BANKING77's train.csv, let 1.1% of hits be wrong when
# test.csv is replayed into an empty cache; 0.045 keeps both fillings under 1%.
AGREEMENT_MARGIN = 0.045
# Nearest cached questions read per semantic lookup (the best and its neighbours).
SEMANTIC_CANDIDATES = 16
HITS_KEY = "answer-cache:hits"
LAST_HIT_KEY = "answer-cache:last-hit"
_REDIS_ERRORS = (RedisError, ConnectionInterrupted, OSError)


@dataclass(frozen=True)
class CachedAnswer:
    entry_id: int
    kind: str  # "exact" | "semantic"
    similarity: float
    question: str  # the cached question, as first asked
    answer: str
    citations: list[dict]
    provider: str
    model: str


# ---------------------------------------------------------------------------
# Which questions may be cached
# ---------------------------------------------------------------------------


def normalize_question(text: str) -> str:
    """Case, diacritics (đ -> d), punctuation and spacing folded away: the exact-match key."""
    return fold(text)


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Vietnamese mobile and landline numbers, spaced or dotted: 0901 234 567, +84 90 123 4567.
_PHONE = re.compile(r"(?<![\d.,])(?:\+?84|0)(?:[\s.-]?\d){8,10}(?![\d.,])")
# Amounts are not identifiers: 1.000.000đ, 500,000 VND, 200k, $15.
_AMOUNT = re.compile(
    r"\$\s?\d[\d.,]*|\d{1,3}(?:[.,]\d{3})+(?:\s?(?:đ|vnđ|vnd|k|usd|đồng|dong))?\b"
    r"|\d+\s?(?:đ|vnđ|vnd|k|usd|đồng|dong)\b",
    re.IGNORECASE,
)
# Six or more digits once amounts are gone: an order, account, card or tracking number.
_LONG_NUMBER = re.compile(r"\d(?:[\s.-]?\d){5,}")
# "#1234", "order 12345", "mã đơn DH1234" (folded): a reference to one order, whatever its length.
_HASH_NUMBER = re.compile(r"#\s?[a-z]*\d")
_ORDER_REFERENCE = re.compile(
    r"\b(?:order|tracking|invoice|ma don|ma van don|van don|don hang|don so|don)\s*(?:no|number|so)?"
    r"\s*[a-z]*\d{3,}"
)
_PERSONAL_EN = re.compile(
    r"\bmy (?:own )?(?:orders?|account|package|parcel|shipment|delivery|refund|invoice|receipt|balance"
    r"|points|subscription|booking|reservation|address|phone number|email|tracking)\b"
    r"|\bi (?:have |had |just )?(?:ordered|bought|paid|placed|purchased|returned)\b"
)
_PERSONAL_VI = re.compile(
    # folded: "đơn hàng của tôi", "đơn của em", "tài khoản mình", "gói hàng của tui"
    r"\b(?:don hang|don dat hang|don|tai khoan|goi hang|kien hang|hang|hoa don|diem|the thanh vien"
    r"|dia chi|so dien thoai|tien hoan|mat khau)\s+(?:cua\s+)?(?:toi|tui|minh|em|to|anh|chi|con|chau)\b"
    # "tôi đã đặt", "em vừa mua", "mình mới thanh toán"
    r"|\b(?:toi|tui|minh|em|to)\s+(?:da|vua|moi|co)\s+(?:dat|mua|thanh toan|chuyen khoan|tra)\b"
)

# Follow-ups: phrases that point back at something said earlier in the conversation.
# Pronouns count anywhere in the question: "can I still return it after 30 days?" is
# about whatever "it" was, and caching that answer would serve it to everyone.
_FOLLOW_UP_START = re.compile(
    r"^(?:and|also|then|so|but|what about|how about|what if|con|vay|the con|the thi|nhung)\b"
)
_FOLLOW_UP_ANYWHERE = re.compile(
    r"\b(?:it|its|that|this|those|these|them|they|the other|the same|the (?:\w+ )?ones?|no"
    r"|(?:cai|loai|mau|chiec|san pham|con|mon|goi|bo) (?:nay|kia|do|ay|nao)"
    r"|nhu vay|nhu the|thi sao|vay a|vay thi)\b"
)
# Question and filler words, folded: a follow-up such as "giá bao nhiêu?" or "how much?"
# is little else, so a question left with at most one other word leans on the history.
_FUNCTION_WORDS = frozenset(
    (
        "a", "an", "the", "is", "are", "was", "were", "be", "do", "does", "did", "can", "could", "will",
        "would", "should", "may", "might", "to", "of", "in", "on", "at", "for", "with", "by", "from",
        "about", "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "much", "many",
        "long", "often", "any", "some", "there", "here", "please", "pls", "thanks", "thank", "you", "i",
        "me", "we", "us", "your", "yours", "ok", "okay", "hi", "hello", "hey",
        # Vietnamese, folded
        "bao", "nhieu", "nao", "sao", "khong", "ko", "k", "chua", "gi", "dau", "khi", "luc", "lam",
        "duoc", "co", "ak", "ah", "vay", "nhi", "nhe", "nha", "oi", "shop", "ad", "ban", "minh", "em",
        "anh", "chi", "toi", "tui", "la", "va", "voi", "cho", "thi", "ma", "hay", "hoac", "hoi", "xin",
        "cam", "on", "vui", "long", "roi",
    )
)  # fmt: skip


def is_cacheable_question(*, question: str, has_history: bool) -> bool:
    """False for questions whose right answer depends on who asks or on what was said before.

    Personal: email addresses, phone, order, account or tracking numbers, "my order",
    "đơn hàng của tôi", "tài khoản của em", "I ordered ...". Follow-ups (only when the
    conversation has history): questions that start like a continuation ("what
    about ...", "còn ..."), point back ("it", "the red one", "cái kia", "nó"), or
    carry at most one content word ("giá bao nhiêu?", "why?").
    """
    raw = question.strip().lower()
    folded = normalize_question(question)
    if not folded:
        return False
    if _EMAIL.search(raw) or _PHONE.search(raw):
        return False
    without_amounts = _AMOUNT.sub(" ", raw)
    if _LONG_NUMBER.search(without_amounts) or _HASH_NUMBER.search(without_amounts):
        return False
    if _ORDER_REFERENCE.search(normalize_question(without_amounts)):
        return False
    if _PERSONAL_EN.search(folded) or _PERSONAL_VI.search(folded):
        return False
    if has_history:
        if _FOLLOW_UP_START.search(folded) or _FOLLOW_UP_ANYWHERE.search(folded):
            return False
        content = [word for word in folded.split() if word not in _FUNCTION_WORDS]
        if len(content) <= 1:
            return False
    return True


# ---------------------------------------------------------------------------
# Lookup
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """What a lookup needs of an entry: the Redis payload, or a row read for a lookup."""

    id: int
    question: str
    answer: str
    citations: list[dict]
    provider: str
    model: str
    documents: dict[str, int]
    knowledge_base_version: int

    def to_payload(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_payload(cls, raw: bytes | str) -> "_Entry":
        return cls(**json.loads(raw))

    def answered(self, *, kind: str, similarity: float) -> CachedAnswer:
        return CachedAnswer(
            entry_id=self.id,
            kind=kind,
            similarity=similarity,
            question=self.question,
            answer=self.answer,
            citations=self.citations,
            provider=self.provider,
            model=self.model,
        )


def cache_lookup(
    *, bot: Bot, language: str, question: str, query_vector: list[float] | None, embedding_model: str
) -> CachedAnswer | None:
    """The cached answer for `question`, or None. Never raises for Redis trouble.

    Without `query_vector` only exact matches are looked for, so a caller can try the
    cache before paying for the query embedding.
    """
    if not _enabled(bot):
        return None
    normalized = normalize_question(question)
    if not normalized:
        return None
    question_hash = _hash(normalized)
    key = _exact_key(bot.pk, language, embedding_model, question_hash)

    entry = _redis_entry(key)
    if entry is not None:
        current_version, exists = _knowledge_base_version_and_entry(bot, entry.id)
        if not exists:
            _redis_delete([key])  # expired, purged or deleted in the admin meanwhile
        elif _still_valid(entry, current_version, redis_key=key):
            _count_hit(entry.id)
            return entry.answered(kind="exact", similarity=1.0)

    rows = _candidates(
        bot=bot,
        language=language,
        embedding_model=embedding_model,
        question_hash=question_hash,
        query_vector=query_vector,
    )
    if not rows:
        return None
    current_version = rows[0]["kb_version"]
    exact = rows[0] if rows[0]["exact"] else None
    if exact is not None:
        entry = _entry_from_row(exact)
        if _still_valid(entry, current_version, redis_key=key):
            # Redis lost the key (eviction, restart) or is down: put it back for next time.
            _redis_set(key, entry, exact["expires_at"])
            _count_hit(entry.id)
            return entry.answered(kind="exact", similarity=1.0)
        rows = rows[1:]

    candidates = rows
    while (row := _semantic_choice(candidates, threshold=bot.cache_similarity)) is not None:
        entry = _entry_from_row(row)
        redis_key = _exact_key(bot.pk, language, embedding_model, row["question_hash"])
        if _still_valid(entry, current_version, redis_key=redis_key):
            _count_hit(entry.id)
            return entry.answered(kind="semantic", similarity=round(float(row["similarity"]), 4))
        candidates = [other for other in candidates if other["id"] != row["id"]]
    return None


def _semantic_choice(rows: list[dict], *, threshold: float, margin: float = AGREEMENT_MARGIN) -> dict | None:
    """The nearest candidate, if it is at least `threshold` similar and its neighbours agree.

    `rows` are ordered by similarity, best first, and carry `similarity` and `citations`.
    `margin` 0 is cosine similarity alone (the benchmark's comparison).
    """
    if not rows or rows[0]["similarity"] < threshold:
        return None
    best = rows[0]
    sources = _answer_sources(best["citations"])
    for row in rows[1:]:
        if row["similarity"] < best["similarity"] - margin:
            break
        if _answer_sources(row["citations"]) != sources:
            return None
    return best


def _answer_sources(citations: list[dict] | str) -> frozenset[tuple]:
    """What an answer was built from: the (document, chunk) pairs it cites.

    Two cached answers with the same sources say the same thing for the purpose of
    the agreement check; different sources may mean a different answer.
    """
    if isinstance(citations, str):
        citations = json.loads(citations)
    return frozenset((citation.get("document_id"), citation.get("chunk_id")) for citation in citations)


def _candidates(
    *,
    bot: Bot,
    language: str,
    embedding_model: str,
    question_hash: str,
    query_vector: list[float] | None,
) -> list[dict]:
    """Unexpired entries: the exact one first (if any), then the nearest by cosine similarity.

    One round trip, which also reads the knowledge base's current version.
    """
    details = """
        e.id, e.question, e.answer, e.citations, e.provider, e.model, e.documents,
        e.knowledge_base_version, e.question_hash, e.expires_at,
        (SELECT version FROM knowledge_knowledgebase WHERE id = %(kb)s) AS kb_version
    """
    params: dict[str, Any] = {
        "hash": question_hash,
        "kb": bot.knowledge_base_id,
        "bot": bot.pk,
        "language": language,
        "model": embedding_model,
    }
    if query_vector is None:
        sql = f"""
            SELECT {details}, true AS exact, 1.0 AS similarity FROM chatbot_answercacheentry AS e
            WHERE bot_id = %(bot)s AND language = %(language)s AND question_hash = %(hash)s
              AND embedding_model = %(model)s AND expires_at > now()
        """
    else:
        dimensions = _dimensions(embedding_model, query_vector)
        # Brute force over one bot, language and model: exact neighbours, which the
        # agreement check needs, in a few ms for a few thousand rows (it grows with
        # the rows; see docs/benchmarks.md). `nearest` orders by the distance alone, so
        # a partial HNSW index on this expression would serve it unchanged. The wide
        # columns are read for the few rows kept, not carried through the sort. The
        # dimension is an integer from our own registry; the cast makes the untyped
        # column comparable, as in knowledge.retrieval.
        distance = f"embedding::vector({dimensions}) <=> %(vector)s::vector({dimensions})"
        where = """
            bot_id = %(bot)s AND language = %(language)s AND embedding_model = %(model)s
            AND expires_at > now()
        """
        sql = f"""
            WITH nearest AS (
                SELECT id, {distance} AS distance FROM chatbot_answercacheentry
                WHERE {where} ORDER BY {distance} LIMIT %(limit)s
            ),
            exact AS (
                SELECT id, {distance} AS distance FROM chatbot_answercacheentry
                WHERE {where} AND question_hash = %(hash)s
            ),
            found AS (SELECT * FROM exact UNION SELECT * FROM nearest)
            SELECT {details}, e.question_hash = %(hash)s AS exact, 1 - found.distance AS similarity
            FROM found JOIN chatbot_answercacheentry AS e ON e.id = found.id
            ORDER BY exact DESC, found.distance
        """
        params["vector"] = vector_literal(query_vector)
        params["limit"] = SEMANTIC_CANDIDATES
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _entry_from_row(row: dict) -> _Entry:
    citations = row["citations"]
    documents = row["documents"]
    # Raw SQL returns jsonb as text or as Python values depending on the driver's adapters.
    return _Entry(
        id=row["id"],
        question=row["question"],
        answer=row["answer"],
        citations=json.loads(citations) if isinstance(citations, str) else citations,
        provider=row["provider"],
        model=row["model"],
        documents=json.loads(documents) if isinstance(documents, str) else documents,
        knowledge_base_version=row["knowledge_base_version"],
    )


def _knowledge_base_version_and_entry(bot: Bot, entry_id: int) -> tuple[int, bool]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT version, EXISTS (
                SELECT 1 FROM chatbot_answercacheentry WHERE id = %s AND expires_at > now()
            )
            FROM knowledge_knowledgebase WHERE id = %s
            """,
            [entry_id, bot.knowledge_base_id],
        )
        version, exists = cursor.fetchone()
    return version, exists


def _still_valid(entry: _Entry, current_version: int, *, redis_key: str) -> bool:
    """Whether every document the answer came from still serves the version it used.

    When it does but the knowledge base moved on (another document changed), the entry
    is brought up to the current version so the next hit skips the check again. When it
    does not, the entry is deleted.
    """
    if entry.knowledge_base_version == current_version:
        return True
    live = document_live_versions(document_ids=[int(pk) for pk in entry.documents])
    if entry.documents and all(live[int(pk)] == version for pk, version in entry.documents.items()):
        # Conditional, so a concurrent store of a newer answer is not marked with our version.
        AnswerCacheEntry.objects.filter(
            pk=entry.id, knowledge_base_version=entry.knowledge_base_version
        ).update(knowledge_base_version=current_version)
        _redis_delete([redis_key])  # the next exact lookup re-reads the row and re-caches it
        return True
    AnswerCacheEntry.objects.filter(pk=entry.id, knowledge_base_version=entry.knowledge_base_version).delete()
    _redis_delete([redis_key])
    return False


# ---------------------------------------------------------------------------
# Store
# ---------------------------------------------------------------------------


def cache_store(
    *,
    bot: Bot,
    language: str,
    question: str,
    query_vector: list[float],
    embedding_model: str,
    answer: str,
    citations: list[dict],
    documents: dict[int, int],
    knowledge_base_version: int,
    provider: str,
    model: str,
    source_message_id: int | None,
    refuse_personal: bool = True,
) -> AnswerCacheEntry | None:
    """Cache an answer; None when it may not be cached. Idempotent per (bot, language, question).

    `documents` maps each document the answer used to the live version it used and
    `knowledge_base_version` is the version retrieval saw. Not cached: answers built
    from no document (nothing would tell when they go stale), personal questions, and
    answers whose knowledge base changed since retrieval (their documents may not be
    what the answer was built from). A second store of the same question replaces the
    first: a store only follows a miss, so the old entry was invalid or expired.
    `refuse_personal=False` is for the BANKING77 benchmark, whose questions all say "my".
    """
    if not _enabled(bot) or not documents or not answer.strip():
        return None
    normalized = normalize_question(question)
    if not normalized:
        return None
    if refuse_personal and not is_cacheable_question(question=question, has_history=False):
        return None
    _dimensions(embedding_model, query_vector)
    current_version = (
        KnowledgeBase.objects.filter(pk=bot.knowledge_base_id).values_list("version", flat=True).first()
    )
    if current_version != knowledge_base_version:
        return None
    expires_at = timezone.now() + timedelta(hours=bot.cache_ttl_hours)
    question_hash = _hash(normalized)
    draft = AnswerCacheEntry(
        bot=bot,
        language=language,
        question=question.strip(),
        normalized_question=normalized,
        question_hash=question_hash,
        embedding_model=embedding_model,
        embedding=query_vector,
        answer=answer,
        citations=citations,
        documents={str(pk): version for pk, version in documents.items()},
        knowledge_base_version=knowledge_base_version,
        provider=provider,
        model=model,
        source_message_id=source_message_id,
        hits=0,
        last_hit_at=None,
        expires_at=expires_at,
    )
    # INSERT ... ON CONFLICT DO UPDATE: one statement, so two workers storing the same
    # question at once both succeed and leave one row.
    (entry,) = AnswerCacheEntry.objects.bulk_create(
        [draft],
        update_conflicts=True,
        unique_fields=["bot", "language", "question_hash"],
        update_fields=[
            "question",
            "normalized_question",
            "embedding_model",
            "embedding",
            "answer",
            "citations",
            "documents",
            "knowledge_base_version",
            "provider",
            "model",
            "source_message_id",
            "hits",
            "created_at",
            "last_hit_at",
            "expires_at",
        ],
    )
    payload = _Entry(
        id=entry.pk,
        question=entry.question,
        answer=answer,
        citations=citations,
        provider=provider,
        model=model,
        documents=entry.documents,
        knowledge_base_version=knowledge_base_version,
    )
    _redis_forget_hits([entry.pk])
    _redis_set(_exact_key(bot.pk, language, embedding_model, question_hash), payload, expires_at)
    return entry


# ---------------------------------------------------------------------------
# Housekeeping
# ---------------------------------------------------------------------------


def cache_purge(*, older_than: datetime | None = None) -> int:
    """Delete expired entries, entries whose documents changed, and (if given) every entry
    stored before `older_than`; returns how many rows went. For a periodic task.

    Also writes the hit counters gathered in Redis to the rows first.
    """
    cache_flush_hits()
    now = timezone.now()
    condition = Q(expires_at__lte=now)
    if older_than is not None:
        condition |= Q(created_at__lt=older_than)
    doomed = AnswerCacheEntry.objects.filter(condition)
    keys = [_row_key(row) for row in doomed.values("bot_id", "language", "embedding_model", "question_hash")]
    deleted, _ = doomed.delete()
    _redis_delete(keys)
    return deleted + _purge_stale()


def _purge_stale(batch_size: int = 1000) -> int:
    """Entries older than their knowledge base: delete the invalid, bring the valid up to date."""
    stale = (
        AnswerCacheEntry.objects.exclude(knowledge_base_version=F("bot__knowledge_base__version"))
        .values("id", "documents", "knowledge_base_version", "bot__knowledge_base__version")
        .order_by("id")
    )
    deleted = 0
    last_id = 0
    while batch := list(stale.filter(id__gt=last_id)[:batch_size]):
        last_id = batch[-1]["id"]
        live = document_live_versions(
            document_ids={int(pk) for row in batch for pk in row["documents"]},
        )
        invalid, valid = [], []
        for row in batch:
            documents = row["documents"]
            ok = bool(documents) and all(live[int(pk)] == version for pk, version in documents.items())
            (valid if ok else invalid).append(row)
        for row in valid:
            AnswerCacheEntry.objects.filter(
                pk=row["id"], knowledge_base_version=row["knowledge_base_version"]
            ).update(knowledge_base_version=row["bot__knowledge_base__version"])
        if invalid:
            doomed = AnswerCacheEntry.objects.filter(pk__in=[row["id"] for row in invalid])
            keys = [
                _row_key(row)
                for row in doomed.values("bot_id", "language", "embedding_model", "question_hash")
            ]
            deleted += doomed.delete()[0]
            _redis_delete(keys)
        # The valid ones' Redis payloads still carry the old version; they take the
        # document check once more on their next exact hit, which also refreshes them.
    return deleted


def cache_flush_hits() -> int:
    """Add the hit counts gathered in Redis to the rows; returns how many entries had hits."""
    try:
        client = get_redis_connection("default")
        hits_key, last_key = cache.make_key(HITS_KEY), cache.make_key(LAST_HIT_KEY)
        # Take the counters atomically: hits counted from now on go to a fresh hash.
        pipe = client.pipeline(transaction=True)
        pipe.hgetall(hits_key)
        pipe.hgetall(last_key)
        pipe.delete(hits_key, last_key)
        hits, last_hits, _ = pipe.execute()
    except _REDIS_ERRORS:
        logger.warning("answer cache: Redis unavailable, hit counters not flushed", exc_info=True)
        return 0
    if not hits:
        return 0
    rows = [
        (int(entry_id), int(count), datetime.fromtimestamp(float(last_hits.get(entry_id, 0)), tz=UTC))
        for entry_id, count in hits.items()
    ]
    with connection.cursor() as cursor:
        cursor.executemany(
            """
            UPDATE chatbot_answercacheentry
            SET hits = hits + %s, last_hit_at = greatest(coalesce(last_hit_at, %s), %s)
            WHERE id = %s
            """,
            [(count, last, last, entry_id) for entry_id, count, last in rows],
        )
    return len(rows)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _enabled(bot: Bot) -> bool:
    return bot.cache_enabled and bot.cache_ttl_hours > 0


def _hash(normalized: str) -> str:
    return hashlib.sha256(normalized.encode()).hexdigest()


def _dimensions(embedding_model: str, vector: list[float]) -> int:
    dimensions = EMBEDDING_DIMENSIONS[embedding_model]
    if len(vector) != dimensions:
        raise ValueError(f"{embedding_model} vectors have {dimensions} dimensions, got {len(vector)}")
    return dimensions


def _exact_key(bot_id: int, language: str, embedding_model: str, question_hash: str) -> str:
    return cache.make_key(f"answer-cache:{bot_id}:{language}:{embedding_model}:{question_hash}")


def _row_key(row: dict) -> str:
    return _exact_key(row["bot_id"], row["language"], row["embedding_model"], row["question_hash"])


def _redis_get(key: str) -> bytes | None:
    try:
        return get_redis_connection("default").get(key)
    except _REDIS_ERRORS:
        logger.warning("answer cache: Redis unavailable, looking in PostgreSQL only", exc_info=True)
        return None


def _redis_entry(key: str) -> _Entry | None:
    payload = _redis_get(key)
    if payload is None:
        return None
    try:
        return _Entry.from_payload(payload)
    except (ValueError, TypeError):  # written by another version of this module
        _redis_delete([key])
        return None


def _redis_set(key: str, entry: _Entry, expires_at: datetime) -> None:
    seconds = int((expires_at - timezone.now()).total_seconds())
    if seconds <= 0:
        return
    try:
        get_redis_connection("default").set(key, entry.to_payload(), ex=seconds)
    except _REDIS_ERRORS:
        logger.warning("answer cache: Redis unavailable, entry not cached there", exc_info=True)


def _redis_delete(keys: list[str]) -> None:
    if not keys:
        return
    try:
        get_redis_connection("default").delete(*keys)
    except _REDIS_ERRORS:
        # The row is gone or current, and every Redis hit is checked against the row.
        logger.warning("answer cache: Redis unavailable, stale keys left to expire", exc_info=True)


def _redis_forget_hits(entry_ids: list[int]) -> None:
    if not entry_ids:
        return
    try:
        client = get_redis_connection("default")
        pipe = client.pipeline(transaction=False)
        pipe.hdel(cache.make_key(HITS_KEY), *entry_ids)
        pipe.hdel(cache.make_key(LAST_HIT_KEY), *entry_ids)
        pipe.execute()
    except _REDIS_ERRORS:
        logger.warning("answer cache: Redis unavailable, old hit counts kept", exc_info=True)


def _count_hit(entry_id: int) -> None:
    """One Redis round trip per hit; `cache_flush_hits` (run by the purge) writes them to the rows.

    An UPDATE per hit would take a row lock on the most popular entries (every customer
    asking the opening hours at once waits on one row) and a WAL flush on each commit.
    """
    try:
        client = get_redis_connection("default")
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(cache.make_key(HITS_KEY), entry_id, 1)
        pipe.hset(cache.make_key(LAST_HIT_KEY), entry_id, f"{timezone.now().timestamp():.3f}")
        pipe.execute()
    except _REDIS_ERRORS:
        AnswerCacheEntry.objects.filter(pk=entry_id).update(hits=F("hits") + 1, last_hit_at=timezone.now())
