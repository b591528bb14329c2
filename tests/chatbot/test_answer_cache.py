"""The answer cache against the real PostgreSQL + pgvector, Redis and knowledge services."""

import math
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from django_redis import get_redis_connection

from chatbot import answer_cache
from chatbot.answer_cache import cache_flush_hits, cache_lookup, cache_purge, cache_store
from chatbot.models import AnswerCacheEntry, Bot
from knowledge import services
from knowledge.embedding import get_embedder
from knowledge.models import Document
from tests.knowledge.helpers import ingest, make_knowledge_base, paste

pytestmark = pytest.mark.django_db

MODEL = "local-e5-small"
DIMENSIONS = 384
HOURS = "# Giờ mở cửa\n\nCửa hàng mở cửa từ 8 giờ sáng đến 21 giờ tối, từ thứ Hai đến Chủ nhật."
RETURNS = "# Returns\n\nYou may return unused products within 30 days of delivery for a full refund."


def axis(index: int) -> list[float]:
    vector = [0.0] * DIMENSIONS
    vector[index] = 1.0
    return vector


def at_similarity(similarity: float, *, to: int = 0, towards: int = 1) -> list[float]:
    """A unit vector whose cosine similarity with axis(to) is exactly `similarity`."""
    vector = [0.0] * DIMENSIONS
    vector[to] = similarity
    vector[towards] = math.sqrt(1 - similarity**2)
    return vector


@pytest.fixture(autouse=True)
def clean_redis():
    client = get_redis_connection("default")
    for key in client.scan_iter(cache.make_key("answer-cache:*")):
        client.delete(key)
    yield


def indexed(knowledge_base, text: str, title: str) -> Document:
    """A pasted document as ingestion leaves it (version 1 live), without embedding it.

    The cache reads only documents' live versions, so most tests skip the embedder; the
    edit tests run the real ingestion.
    """
    document = paste(knowledge_base, text, title=title)
    Document.objects.filter(pk=document.pk).update(status=Document.Status.READY, live_version=1)
    services.knowledge_base_touch(knowledge_base_id=knowledge_base.pk)
    document.refresh_from_db()
    return document


@pytest.fixture
def shop():
    knowledge_base = make_knowledge_base("Shop")
    indexed(knowledge_base, HOURS, "Hours")
    indexed(knowledge_base, RETURNS, "Returns")
    return knowledge_base


@pytest.fixture
def bot(shop):
    return Bot.objects.create(name="Sao Mai", slug="sao-mai", knowledge_base=shop)


def hours_document(bot: Bot) -> Document:
    return Document.objects.get(knowledge_base=bot.knowledge_base, title="Hours")


def store(
    bot: Bot, question: str, *, vector=None, language="vi", answer="Mở cửa 8:00-21:00.", documents=None
):
    bot.knowledge_base.refresh_from_db()
    if documents is None:
        document = hours_document(bot)
        documents = {document.pk: document.live_version}
    return cache_store(
        bot=bot,
        language=language,
        question=question,
        query_vector=vector or axis(0),
        embedding_model=MODEL,
        answer=answer,
        citations=[{"number": 1, "document_id": pk, "document_title": "Hours"} for pk in documents],
        documents=documents,
        knowledge_base_version=bot.knowledge_base.version,
        provider="gemini",
        model="gemini-3.1-flash-lite",
        source_message_id=None,
    )


def lookup(bot: Bot, question: str, *, vector=None, language="vi"):
    return cache_lookup(
        bot=bot, language=language, question=question, query_vector=vector, embedding_model=MODEL
    )


# Exact matches


def test_an_exact_hit_ignores_case_diacritics_and_punctuation(bot):
    entry = store(bot, "Giờ mở cửa?")

    hit = lookup(bot, "gio MO cua")

    assert hit is not None
    assert (hit.entry_id, hit.kind, hit.similarity) == (entry.pk, "exact", 1.0)
    assert hit.question == "Giờ mở cửa?"
    assert hit.answer == "Mở cửa 8:00-21:00."
    assert hit.citations[0]["document_title"] == "Hours"
    assert (hit.provider, hit.model) == ("gemini", "gemini-3.1-flash-lite")


def test_an_exact_hit_is_served_from_redis_with_one_small_query(bot, django_assert_num_queries):
    store(bot, "Giờ mở cửa?")

    with django_assert_num_queries(1):  # the knowledge base's version, and that the row still exists
        assert lookup(bot, "giờ mở cửa").kind == "exact"


def test_an_exact_hit_needs_no_query_vector_and_a_different_question_misses(bot):
    store(bot, "Giờ mở cửa?")

    assert lookup(bot, "Phí giao hàng bao nhiêu?") is None


def test_when_redis_lost_the_key_postgresql_answers_and_redis_gets_it_back(bot):
    store(bot, "Giờ mở cửa?")
    client = get_redis_connection("default")
    for key in client.scan_iter(cache.make_key("answer-cache:*:*")):
        client.delete(key)

    assert lookup(bot, "gio mo cua").kind == "exact"
    assert list(client.scan_iter(cache.make_key("answer-cache:*:*")))


def test_storing_the_same_question_twice_keeps_one_entry_with_the_newer_answer(bot):
    first = store(bot, "Giờ mở cửa?", answer="old")
    second = store(bot, "gio mo cua", answer="new")

    assert first.pk == second.pk
    assert AnswerCacheEntry.objects.count() == 1
    assert lookup(bot, "Giờ mở cửa?").answer == "new"


# Semantic matches


def test_a_differently_worded_question_above_the_threshold_is_a_semantic_hit(bot):
    bot.cache_similarity = 0.95
    entry = store(bot, "Giờ mở cửa?", vector=axis(0))

    hit = lookup(bot, "Cửa hàng mở lúc mấy giờ?", vector=at_similarity(0.97))

    assert hit is not None
    assert (hit.entry_id, hit.kind) == (entry.pk, "semantic")
    assert hit.similarity == pytest.approx(0.97, abs=1e-4)


def test_a_question_below_the_threshold_misses(bot):
    bot.cache_similarity = 0.95
    store(bot, "Giờ mở cửa?", vector=axis(0))

    assert lookup(bot, "Cửa hàng có giao hàng không?", vector=at_similarity(0.94)) is None


def test_the_threshold_is_the_bots_own(bot):
    store(bot, "Giờ mở cửa?", vector=axis(0))
    bot.cache_similarity = 0.99

    assert lookup(bot, "Cửa hàng mở lúc mấy giờ?", vector=at_similarity(0.97)) is None


def test_a_question_between_two_cached_answers_from_different_sources_misses(bot):
    # The nearest cached question is similar enough, but another one with a different
    # answer is almost as near: the question may be either, so the cache stays out.
    bot.cache_similarity = 0.95
    returns = Document.objects.get(knowledge_base=bot.knowledge_base, title="Returns")
    store(bot, "Giờ mở cửa?", vector=axis(0))
    store(bot, "Đổi trả mấy giờ?", vector=at_similarity(0.98, towards=2), documents={returns.pk: 1})
    query = at_similarity(0.99)  # 0.99 to the first, 0.97 to the second

    assert lookup(bot, "Mấy giờ thì mở?", vector=query) is None


def test_neighbours_with_the_same_sources_agree_and_the_nearest_answers(bot):
    bot.cache_similarity = 0.95
    nearest = store(bot, "Giờ mở cửa?", vector=axis(0))
    store(bot, "Mấy giờ đóng cửa?", vector=at_similarity(0.98, towards=2))

    hit = lookup(bot, "Mấy giờ thì mở?", vector=at_similarity(0.99))

    assert hit is not None and hit.entry_id == nearest.pk


@pytest.mark.parametrize(
    ("language", "cached", "paraphrase", "unrelated"),
    [
        (
            "en",
            "What are your opening hours?",
            "What time do you open?",
            "Can I return a product after 30 days?",
        ),
        ("vi", "Mấy giờ cửa hàng mở cửa?", "Cửa hàng mở cửa lúc mấy giờ?", "Phí giao hàng bao nhiêu?"),
    ],
)
def test_a_paraphrase_embedded_by_the_real_model_hits_and_another_question_does_not(
    bot, language, cached, paraphrase, unrelated
):
    def embed(text: str) -> list[float]:
        return get_embedder(MODEL).embed_query(text).vectors[0]

    bot.cache_similarity = 0.95
    store(bot, cached, language=language, vector=embed(cached))

    hit = lookup(bot, paraphrase, language=language, vector=embed(paraphrase))

    assert hit is not None and hit.kind == "semantic" and hit.question == cached
    assert lookup(bot, unrelated, language=language, vector=embed(unrelated)) is None


# Isolation


def test_entries_are_per_bot(bot):
    other = Bot.objects.create(name="Night", slug="night", knowledge_base=bot.knowledge_base)
    store(bot, "Giờ mở cửa?")

    assert lookup(other, "Giờ mở cửa?") is None
    assert lookup(other, "Giờ mở cửa?", vector=axis(0)) is None


def test_entries_are_per_language(bot):
    store(bot, "Opening hours?", language="en")

    assert lookup(bot, "Opening hours?", language="vi") is None
    assert lookup(bot, "Opening hours?", language="vi", vector=axis(0)) is None
    assert lookup(bot, "Opening hours?", language="en") is not None


def test_entries_are_per_embedding_model(bot):
    store(bot, "Giờ mở cửa?")

    missed = cache_lookup(
        bot=bot,
        language="vi",
        question="Giờ mở cửa?",
        query_vector=None,
        embedding_model="bedrock-titan-v2-512",
    )

    assert missed is None


def test_a_bot_with_the_cache_off_neither_stores_nor_serves(bot):
    store(bot, "Giờ mở cửa?")
    bot.cache_enabled = False

    assert lookup(bot, "Giờ mở cửa?") is None
    assert store(bot, "Phí giao hàng?") is None
    assert AnswerCacheEntry.objects.count() == 1


# What is not stored


def test_personal_questions_are_not_stored_even_if_the_caller_asks(bot):
    assert store(bot, "Đơn hàng của tôi DH123456 đến đâu rồi?") is None
    assert not AnswerCacheEntry.objects.exists()


def test_an_answer_built_from_no_document_is_not_stored(bot):
    # Nothing would tell when it goes stale (a "don't know" may become answerable).
    assert store(bot, "Giờ mở cửa?", documents={}) is None


def test_an_answer_is_not_stored_when_the_knowledge_changed_since_retrieval(bot):
    bot.knowledge_base.refresh_from_db()
    seen_by_retrieval = bot.knowledge_base.version
    document = hours_document(bot)
    services.knowledge_base_touch(knowledge_base_id=bot.knowledge_base_id)

    stored = cache_store(
        bot=bot,
        language="vi",
        question="Giờ mở cửa?",
        query_vector=axis(0),
        embedding_model=MODEL,
        answer="...",
        citations=[],
        documents={document.pk: document.live_version},
        knowledge_base_version=seen_by_retrieval,
        provider="gemini",
        model="m",
        source_message_id=None,
    )

    assert stored is None


# Invalidation


def test_editing_a_cited_document_invalidates_the_entry_and_deletes_it(bot):
    store(bot, "Giờ mở cửa?")
    document = hours_document(bot)

    services.document_update_text(document=document, text=HOURS.replace("21 giờ", "22 giờ"))
    assert lookup(bot, "Giờ mở cửa?") is not None  # the old version still serves until the new one is in
    ingest(document)  # the real pipeline swaps version 2 in

    assert document.live_version == 2
    assert lookup(bot, "Giờ mở cửa?") is None
    assert not AnswerCacheEntry.objects.exists()


def test_disabling_a_cited_document_invalidates_the_entry(bot):
    store(bot, "Giờ mở cửa?")

    services.document_set_enabled(document=hours_document(bot), enabled=False)

    assert lookup(bot, "Giờ mở cửa?") is None
    assert not AnswerCacheEntry.objects.exists()


def test_deleting_a_cited_document_invalidates_the_entry(bot):
    store(bot, "Giờ mở cửa?", vector=axis(0))

    services.document_delete(document=hours_document(bot))

    assert lookup(bot, "gio mo cua", vector=axis(0)) is None
    assert not AnswerCacheEntry.objects.exists()


def test_a_change_to_another_document_keeps_the_entry_and_brings_it_up_to_date(bot):
    returns = Document.objects.get(knowledge_base=bot.knowledge_base, title="Returns")
    entry = store(bot, "Giờ mở cửa?")

    services.document_update_text(document=returns, text=RETURNS.replace("30 days", "14 days"))
    ingest(returns)
    bot.knowledge_base.refresh_from_db()

    assert lookup(bot, "Giờ mở cửa?") is not None
    entry.refresh_from_db()
    assert entry.knowledge_base_version == bot.knowledge_base.version


def test_while_the_knowledge_base_version_stands_still_documents_are_not_checked(bot):
    store(bot, "Giờ mở cửa?")
    # A row changed behind the services' back: the version did not move, so nothing looks.
    Document.objects.filter(pk=hours_document(bot).pk).update(live_version=99)

    assert lookup(bot, "Giờ mở cửa?") is not None

    services.knowledge_base_touch(knowledge_base_id=bot.knowledge_base_id)
    assert lookup(bot, "Giờ mở cửa?") is None


def test_an_entry_deleted_in_postgresql_is_not_served_from_redis(bot):
    entry = store(bot, "Giờ mở cửa?")

    AnswerCacheEntry.objects.filter(pk=entry.pk).delete()

    assert lookup(bot, "Giờ mở cửa?") is None


def test_an_unreadable_redis_payload_is_dropped_and_postgresql_answers(bot):
    entry = store(bot, "Giờ mở cửa?")
    key = answer_cache._exact_key(bot.pk, "vi", MODEL, entry.question_hash)
    get_redis_connection("default").set(key, b"\x80 not json")

    assert lookup(bot, "Giờ mở cửa?").entry_id == entry.pk


# Expiry and purge


def test_an_expired_entry_is_not_served(bot):
    entry = store(bot, "Giờ mở cửa?", vector=axis(0))

    AnswerCacheEntry.objects.filter(pk=entry.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert lookup(bot, "Giờ mở cửa?", vector=axis(0)) is None


def test_entries_live_for_the_bots_ttl(bot):
    bot.cache_ttl_hours = 2
    before = timezone.now()

    entry = store(bot, "Giờ mở cửa?")

    assert before + timedelta(hours=2) <= entry.expires_at <= timezone.now() + timedelta(hours=2)
    ttl = get_redis_connection("default").ttl(
        answer_cache._exact_key(bot.pk, "vi", MODEL, entry.question_hash)
    )
    assert 2 * 3600 - 5 <= ttl <= 2 * 3600


def test_purge_deletes_expired_and_invalid_entries_and_keeps_the_rest(bot):
    expired = store(bot, "Giờ mở cửa?")
    AnswerCacheEntry.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    returns = Document.objects.get(knowledge_base=bot.knowledge_base, title="Returns")
    invalid = store(bot, "Return policy?", documents={returns.pk: returns.live_version}, language="en")
    kept = store(bot, "Mấy giờ mở cửa?")
    services.document_set_enabled(document=returns, enabled=False)

    assert cache_purge() == 2

    assert list(AnswerCacheEntry.objects.values_list("pk", flat=True)) == [kept.pk]
    assert invalid.pk != kept.pk
    kept.refresh_from_db()
    bot.knowledge_base.refresh_from_db()
    assert kept.knowledge_base_version == bot.knowledge_base.version


def test_purge_can_also_drop_everything_stored_before_a_time(bot):
    store(bot, "Giờ mở cửa?")

    assert cache_purge(older_than=timezone.now()) == 1
    assert lookup(bot, "Giờ mở cửa?") is None


# Hit counters


def test_hits_are_counted_in_redis_and_written_to_the_row_by_the_flush(bot):
    entry = store(bot, "Giờ mở cửa?")
    lookup(bot, "gio mo cua")
    lookup(bot, "Giờ mở cửa")

    assert cache_flush_hits() == 1

    entry.refresh_from_db()
    assert entry.hits == 2
    assert entry.last_hit_at is not None
    assert cache_flush_hits() == 0


# Redis down


@pytest.fixture
def redis_down(settings, tmp_path):
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"unix://{tmp_path}/nobody-listens.sock?db=0",
            "KEY_PREFIX": "cbtest",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }


def test_with_redis_down_a_store_and_a_lookup_still_work_through_postgresql(bot, redis_down, caplog):
    entry = store(bot, "Giờ mở cửa?")

    hit = lookup(bot, "gio mo cua")

    assert hit is not None and hit.entry_id == entry.pk
    assert "Redis unavailable" in caplog.text
    entry.refresh_from_db()
    assert entry.hits == 1  # counted on the row directly


def test_with_redis_down_a_miss_is_a_miss_not_an_error(bot, redis_down):
    assert lookup(bot, "Phí giao hàng?") is None
    assert lookup(bot, "Phí giao hàng?", vector=axis(5)) is None
    assert cache_purge() == 0
