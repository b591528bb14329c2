import pytest
from django.db import connection, transaction

from knowledge import retrieval, tasks
from knowledge.models import Chunk, KnowledgeBase
from knowledge.retrieval import combine, retrieve
from tests.knowledge.helpers import ingest, make_knowledge_base, paste

pytestmark = pytest.mark.django_db

HOURS_VI = "# Giờ mở cửa\n\nCửa hàng mở cửa từ 8 giờ sáng đến 21 giờ tối, từ thứ Hai đến Chủ nhật."
DELIVERY_VI = "# Giao hàng\n\nĐơn hàng từ 500.000đ được miễn phí giao hàng toàn quốc."
RETURNS_EN = "# Returns\n\nYou may return unused products within 30 days of delivery for a full refund."


@pytest.fixture
def shop():
    return _shop()


def _shop() -> KnowledgeBase:
    knowledge_base = make_knowledge_base("Shop")
    for title, text in [("Hours", HOURS_VI), ("Delivery", DELIVERY_VI), ("Returns", RETURNS_EN)]:
        ingest(paste(knowledge_base, text, title=title))
    return knowledge_base


def test_keyword_search_ignores_diacritics(shop):
    result = retrieve(knowledge_base=shop, query="gio mo cua")

    best = result.hits[0]
    assert best.document_title == "Hours"
    assert best.keyword_rank == 1
    assert best.heading_path == ["Giờ mở cửa"]


def test_keyword_search_finds_accented_words_from_an_accented_query_too(shop):
    assert retrieve(knowledge_base=shop, query="miễn phí giao hàng").hits[0].document_title == "Delivery"


def test_no_english_stemmer_touches_the_indexed_text(shop):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT search_vector::text FROM knowledge_chunk WHERE id = %s",
            [Chunk.objects.get(document__title="Returns").pk],
        )
        (vector,) = cursor.fetchone()

    assert "'products'" in vector and "'delivery'" in vector
    assert "'product'" not in vector and "'deliveri'" not in vector


def test_each_hit_carries_scores_title_and_heading_for_citations(shop):
    result = retrieve(knowledge_base=shop, query="Can I return a product after 30 days?")

    best = result.hits[0]
    assert best.document_title == "Returns"
    assert best.heading == "Returns"
    assert best.vector_score is not None and 0 < best.vector_score <= 1
    assert best.keyword_score is not None
    assert best.fused_score > 0
    timings = result.timings_ms
    assert set(timings) == {"embed", "search", "vector", "keyword", "fuse", "total"}
    assert timings["total"] == pytest.approx(timings["embed"] + timings["search"] + timings["fuse"], abs=0.05)


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_keyword_search_runs_beside_the_vector_search_with_the_same_hits(
    monkeypatch,
):
    shop = _shop()
    questions = [
        "gio mo cua",
        "Can I return a product after 30 days?",
        "miễn phí giao hàng",
        "Khi nào tiệm mở?",
    ]
    on_own_connection = []
    search = retrieval._keyword_on_own_connection
    monkeypatch.setattr(
        retrieval, "_keyword_on_own_connection", lambda params: on_own_connection.append(1) or search(params)
    )

    beside = [retrieve(knowledge_base=shop, query=question) for question in questions]
    assert len(on_own_connection) == len(questions)
    with transaction.atomic():  # another connection could not see this transaction's writes
        in_line = [retrieve(knowledge_base=shop, query=question) for question in questions]
    assert len(on_own_connection) == len(questions)

    assert [result.hits for result in beside] == [result.hits for result in in_line]
    for result in beside:  # each search's own time fits in the time of both
        assert max(result.timings_ms["vector"], result.timings_ms["keyword"]) <= result.timings_ms["search"]


def test_a_paraphrase_without_shared_words_is_found_by_the_vector_search(shop):
    result = retrieve(knowledge_base=shop, query="Khi nào tiệm mở?")  # "when does the shop open?"

    assert result.hits[0].document_title == "Hours"


def test_other_knowledge_bases_are_never_returned_and_the_full_top_k_still_comes_back():
    mine = make_knowledge_base("Mine")
    theirs = make_knowledge_base("Theirs")
    for number in range(6):
        ingest(paste(mine, f"Store {number} opens at {8 + number} am.", title=f"mine {number}"))
    # Many closer neighbours in another knowledge base: the filtered scan must go past them.
    text = "\n\n".join(f"## Store opening {n}\n\nStore opening hours {n}: opens at 8 am." for n in range(150))
    ingest(paste(theirs, text, title="theirs"))

    hits = retrieve(knowledge_base=mine, query="when does the store open", top_k=6).hits

    assert len(hits) == 6
    assert {hit.document_title for hit in hits} == {f"mine {number}" for number in range(6)}


def test_disabled_documents_are_not_returned(shop):
    from knowledge import services

    hours = shop.documents.get(title="Hours")
    services.document_set_enabled(document=hours, enabled=False)

    titles = {hit.document_title for hit in retrieve(knowledge_base=shop, query="gio mo cua", top_k=10).hits}

    assert "Hours" not in titles


def test_the_combination_rewards_items_both_searches_agree_on():
    vector = [(1, 0.90), (2, 0.85), (3, 0.84)]
    keyword = [(3, 0.5), (4, 0.4), (1, 0.1)]

    ranked = [item for item, _ in combine(vector, keyword, top_k=4)]

    assert ranked[0] == 1
    assert ranked.index(3) < ranked.index(2)
    assert set(ranked) == {1, 2, 3, 4}


def test_a_flat_vector_list_does_not_drown_a_clear_keyword_match():
    # A query typed without diacritics scores about the same against every chunk.
    vector = [(1, 0.807), (2, 0.800), (3, 0.795)]
    keyword = [(3, 0.46), (2, 0.05), (1, 0.02)]

    assert combine(vector, keyword, top_k=3)[0][0] == 3


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_search_settings_end_with_the_search(monkeypatch):
    # Both searches go out as one message, its own implicit transaction: the local HNSW
    # settings must not stay on the connection, which Django reuses.
    monkeypatch.setattr(tasks.ingest_document, "delay", lambda *args, **kwargs: None)  # ingested here
    shop = _shop()
    assert not connection.in_atomic_block

    result = retrieve(knowledge_base=shop, query="gio mo cua")

    assert result.hits[0].document_title == "Hours"
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')")
        assert cursor.fetchone() == ("40", "off")
