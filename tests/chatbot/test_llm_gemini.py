"""The Gemini chat provider through the real google-genai SDK against the loopback fake. No database."""

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest

from chatbot.llm import (
    ContentBlocked,
    Generation,
    GenerationRequest,
    Message,
    PermanentError,
    RateLimited,
    StreamInterrupted,
    TransientError,
    get_provider,
)
from chatbot.llm import gemini as chat_gemini
from chatbot.llm.gemini import GeminiProvider, thinking_config
from tests.fakes import count_tokens
from tests.fakes.gemini_server import FAKE_THOUGHTS_TOKENS

SYSTEM = (
    "Answer only from the sources and cite them as [n].\n"
    "[1] Cửa hàng mở cửa từ 8 giờ sáng đến 10 giờ tối. Chủ nhật nghỉ buổi chiều.\n"
    "[2] Phí giao hàng nội thành là 20.000 đồng."
)
QUESTION = "Cửa hàng mở cửa lúc mấy giờ?"
ANSWER = "Cửa hàng mở cửa từ 8 giờ sáng đến 10 giờ tối. [1]"


def ask(question: str = QUESTION, **overrides) -> GenerationRequest:
    fields = {"system": SYSTEM, "messages": [Message("user", question)], "model": "gemini-2.5-flash"}
    return GenerationRequest(**{**fields, **overrides})


def collect(stream) -> tuple[list[str], list[Generation]]:
    items = list(stream)
    return [item for item in items if isinstance(item, str)], [
        item for item in items if isinstance(item, Generation)
    ]


@pytest.fixture
def gemini(gemini_server) -> GeminiProvider:
    return get_provider("gemini")


# Answers


def test_gemini_answers_from_the_prompt_and_reports_provider_model_and_usage(gemini, gemini_server):
    generation = gemini.generate(ask())

    assert generation.text == ANSWER
    assert (generation.provider, generation.model, generation.finish_reason) == (
        "gemini",
        "gemini-2.5-flash",
        "stop",
    )
    assert generation.usage.input_tokens == count_tokens(SYSTEM) + count_tokens(QUESTION)
    assert generation.usage.output_tokens == count_tokens(ANSWER)
    assert (generation.usage.cached_tokens, generation.usage.thinking_tokens) == (0, 0)
    assert generation.latency_ms >= 0


def test_gemini_sends_system_instruction_history_as_user_and_model_turns_and_generation_config(
    gemini, gemini_server
):
    history = [Message("user", "Xin chào"), Message("assistant", "Chào bạn!"), Message("user", QUESTION)]

    gemini.generate(ask(messages=history, max_output_tokens=300, temperature=0.4))

    [request] = gemini_server.chat_requests()
    assert request.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert request.headers["x-goog-api-key"] == "test-key"
    assert request.body["systemInstruction"]["parts"] == [{"text": SYSTEM}]
    assert [(content["role"], content["parts"]) for content in request.body["contents"]] == [
        ("user", [{"text": "Xin chào"}]),
        ("model", [{"text": "Chào bạn!"}]),
        ("user", [{"text": QUESTION}]),
    ]
    assert request.body["generationConfig"] == {
        "temperature": 0.4,
        "maxOutputTokens": 300,
        "thinkingConfig": {"thinking_budget": 0},
    }


def test_gemini_sets_the_request_timeout_in_milliseconds_and_shares_one_client(gemini, gemini_server):
    gemini.generate(ask(timeout_seconds=7.5))
    gemini.generate(ask(timeout_seconds=3))
    list(gemini.stream(ask()))

    timeouts = [request.headers["x-server-timeout"] for request in gemini_server.chat_requests()]
    assert timeouts == ["8", "3", "20"]  # the SDK sends ceil(seconds) of the per-request timeout
    assert chat_gemini._client() is chat_gemini._client()


def test_gemini_default_thinking_reports_thought_tokens_apart_from_the_answer(gemini, gemini_server):
    generation = gemini.generate(ask(thinking_budget=None))

    [request] = gemini_server.chat_requests()
    assert "thinkingConfig" not in request.body["generationConfig"]
    assert generation.usage.thinking_tokens == FAKE_THOUGHTS_TOKENS
    assert generation.usage.output_tokens == count_tokens(ANSWER)


def test_gemini_3_flash_turns_thinking_down_with_the_minimal_level(gemini, gemini_server):
    generation = gemini.generate(ask(model="gemini-3.5-flash"))

    [request] = gemini_server.chat_requests()
    assert request.body["generationConfig"]["thinkingConfig"] == {"thinking_level": "MINIMAL"}
    assert generation.usage.thinking_tokens == 0


def test_gemini_2_5_pro_gets_its_smallest_thinking_budget_instead_of_an_invalid_zero(gemini, gemini_server):
    generation = gemini.generate(ask(model="gemini-2.5-pro"))

    [request] = gemini_server.chat_requests()
    assert request.body["generationConfig"]["thinkingConfig"] == {"thinking_budget": 128}
    assert generation.text == ANSWER


def test_thinking_config_maps_budgets_per_model_family():
    assert thinking_config("gemini-2.5-flash", None) is None
    assert thinking_config("gemini-2.5-flash-lite", 0).thinking_budget == 0
    assert thinking_config("gemini-2.5-flash", 512).thinking_budget == 512
    assert thinking_config("gemini-3-pro-preview", 0).thinking_level.value == "LOW"
    assert thinking_config("gemini-3.8-flash", 0).thinking_level.value == "MINIMAL"
    assert thinking_config("gemini-3.8-flash", 1024).thinking_budget == 1024
    assert thinking_config("models/gemini-2.5-pro", 0).thinking_budget == 128
    assert thinking_config("gemini-2.0-flash", 0) is None  # does not think


def test_gemini_counts_cached_tokens_inside_the_input_tokens(gemini, gemini_server):
    gemini_server.script_reply("Mở cửa 8 giờ. [1]", prompt_tokens=1200, cached_tokens=1000, output_tokens=9)

    usage = gemini.generate(ask()).usage

    assert (usage.input_tokens, usage.cached_tokens, usage.output_tokens) == (1200, 1000, 9)


def test_gemini_answer_cut_by_max_output_tokens_finishes_with_max_tokens(gemini, gemini_server):
    generation = gemini.generate(ask(max_output_tokens=4))

    assert generation.finish_reason == "max_tokens"
    assert generation.text == "Cửa hàng mở cửa"
    assert generation.usage.output_tokens == 4


def test_gemini_thinking_that_uses_up_max_output_tokens_is_a_permanent_error(gemini, gemini_server):
    with pytest.raises(PermanentError, match="max_output_tokens"):
        gemini.generate(ask(thinking_budget=None, max_output_tokens=10))


# Streaming


def test_gemini_stream_yields_text_deltas_then_one_generation_with_the_final_usage(gemini, gemini_server):
    gemini_server.script_reply("Chúng tôi mở cửa từ 8 giờ sáng mỗi ngày. [1]", pieces=3)

    deltas, generations = collect(gemini.stream(ask()))

    assert len(deltas) == 3
    [generation] = generations
    assert "".join(deltas) == generation.text == "Chúng tôi mở cửa từ 8 giờ sáng mỗi ngày. [1]"
    assert generation.usage.input_tokens == count_tokens(SYSTEM) + count_tokens(QUESTION)
    assert generation.usage.output_tokens == count_tokens(generation.text)
    assert generation.finish_reason == "stop"
    [request] = gemini_server.chat_requests()
    assert request.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert request.query == {"alt": ["sse"]}


def test_gemini_stream_sends_nothing_until_it_is_iterated(gemini, gemini_server):
    stream = gemini.stream(ask())

    assert gemini_server.requests == []
    assert isinstance(next(stream), str)
    assert len(gemini_server.requests) == 1


def test_gemini_stream_abandoned_by_the_caller_leaves_the_client_usable(gemini, gemini_server):
    stream = gemini.stream(ask())
    next(stream)
    stream.close()

    assert gemini.generate(ask()).text == ANSWER


def test_fake_gemini_stream_is_data_lines_and_blank_lines_only(gemini_server):
    url = urlsplit(gemini_server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": "xin chào"}]}]})
    connection.request(
        "POST",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        body=body,
        headers={"x-goog-api-key": "test-key", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    raw = response.read().decode()
    connection.close()

    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream"
    events = raw.split("\r\n\r\n")
    assert events[-1] == ""
    assert all(event.startswith("data: ") and "\n" not in event for event in events[:-1])
    payloads = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert "candidatesTokenCount" not in payloads[0]["usageMetadata"]
    assert payloads[-1]["candidates"][0]["finishReason"] == "STOP"
    assert payloads[-1]["usageMetadata"]["candidatesTokenCount"] > 0


# Errors


def test_gemini_rate_limit_raises_rate_limited_with_the_retry_info_delay(gemini, gemini_server):
    gemini_server.fail_next(429, retry_delay="7s")

    with pytest.raises(RateLimited, match="RESOURCE_EXHAUSTED") as raised:
        gemini.generate(ask())

    assert raised.value.retry_after == 7.0


def test_gemini_rate_limit_before_a_stream_starts_raises_rate_limited(gemini, gemini_server):
    gemini_server.fail_next(429, retry_delay="2s")

    with pytest.raises(RateLimited) as raised:
        list(gemini.stream(ask()))

    assert raised.value.retry_after == 2.0


@pytest.mark.parametrize("status", [500, 503, 504])
def test_gemini_server_errors_raise_transient_error_after_one_request(gemini, gemini_server, status):
    gemini_server.fail_next(status, times=3)

    with pytest.raises(TransientError) as raised:
        gemini.generate(ask())

    assert not isinstance(raised.value, RateLimited)
    assert len(gemini_server.requests) == 1  # the SDK does not retry; the fallback chain does


def test_gemini_slow_server_raises_transient_error_when_the_timeout_expires(gemini, gemini_server):
    gemini_server.latency = 3
    started = time.monotonic()

    with pytest.raises(TransientError, match="Timeout"):
        gemini.generate(ask(timeout_seconds=0.3))

    assert time.monotonic() - started < 2


def test_gemini_malformed_body_raises_transient_error(gemini, gemini_server):
    gemini_server.malformed_next()

    with pytest.raises(TransientError, match="unreadable"):
        gemini.generate(ask())


def test_gemini_bad_request_and_unknown_model_raise_permanent_error(gemini, gemini_server):
    gemini_server.fail_next(400, message="Request contains an invalid argument.")
    with pytest.raises(PermanentError, match="INVALID_ARGUMENT"):
        gemini.generate(ask())

    with pytest.raises(PermanentError, match="NOT_FOUND"):
        gemini.generate(ask(model="gemini-2.0-flash"))  # shut down 2026-06-01


def test_gemini_without_an_api_key_raises_permanent_error_without_a_request(gemini, gemini_server, settings):
    settings.GEMINI_API_KEY = ""

    with pytest.raises(PermanentError, match="GEMINI_API_KEY"):
        gemini.generate(ask())

    assert gemini_server.requests == []


def test_gemini_blocked_prompt_raises_content_blocked(gemini, gemini_server):
    gemini_server.block_next("PROHIBITED_CONTENT")

    with pytest.raises(ContentBlocked, match="PROHIBITED_CONTENT"):
        gemini.generate(ask())


def test_gemini_blocked_prompt_in_a_stream_raises_content_blocked(gemini, gemini_server):
    gemini_server.block_next("SAFETY")

    with pytest.raises(ContentBlocked, match="SAFETY"):
        list(gemini.stream(ask()))


def test_gemini_answer_withheld_for_safety_raises_content_blocked(gemini, gemini_server):
    gemini_server.script_reply("", finish_reason="SAFETY")

    with pytest.raises(ContentBlocked, match="SAFETY"):
        gemini.generate(ask())


def test_gemini_refusal_after_part_of_an_answer_raises_content_blocked_without_the_text(
    gemini, gemini_server
):
    gemini_server.script_reply("Theo tài liệu, cửa hàng", finish_reason="RECITATION")

    with pytest.raises(ContentBlocked, match="RECITATION"):
        gemini.generate(ask())


def test_gemini_error_event_mid_stream_raises_stream_interrupted_after_the_partial_text(
    gemini, gemini_server
):
    gemini_server.break_stream(after=1, how="error", status=503)
    received: list[str] = []

    with pytest.raises(StreamInterrupted, match="UNAVAILABLE") as raised:
        for item in gemini.stream(ask()):
            received.append(item)

    assert len(received) == 1
    assert raised.value.partial_text == received[0]
    assert ANSWER.startswith(received[0])
    assert raised.value.usage.input_tokens == count_tokens(SYSTEM) + count_tokens(QUESTION)


def test_gemini_connection_cut_mid_stream_raises_stream_interrupted(gemini, gemini_server):
    gemini_server.break_stream(after=2, how="cut")
    received: list[str] = []

    with pytest.raises(StreamInterrupted, match="could not be reached") as raised:
        for item in gemini.stream(ask()):
            received.append(item)

    assert len(received) == 2
    assert raised.value.partial_text == "".join(received)


def test_gemini_unreadable_event_mid_stream_raises_stream_interrupted(gemini, gemini_server):
    gemini_server.break_stream(after=1, how="malformed")

    with pytest.raises(StreamInterrupted, match="unreadable"):
        list(gemini.stream(ask()))


def test_gemini_error_event_before_any_text_raises_the_mapped_error(gemini, gemini_server):
    gemini_server.break_stream(after=0, how="error", status=503)

    with pytest.raises(TransientError) as raised:
        list(gemini.stream(ask()))

    assert not isinstance(raised.value, StreamInterrupted)


def test_gemini_stalled_stream_times_out_mid_stream(gemini, gemini_server):
    gemini_server.event_delay = 3
    started = time.monotonic()

    with pytest.raises(StreamInterrupted, match="Timeout"):
        list(gemini.stream(ask(timeout_seconds=0.3)))

    assert time.monotonic() - started < 2
