"""The Bedrock chat provider through boto3's Converse and ConverseStream against the loopback fake.
No database."""

import time

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
from chatbot.llm import bedrock as chat_bedrock
from chatbot.llm.bedrock import BedrockProvider
from tests.fakes import count_tokens

SYSTEM = (
    "Answer only from the sources and cite them as [n].\n"
    "[1] Sản phẩm được đổi trả trong 30 ngày nếu còn hóa đơn. Hàng giảm giá không được đổi.\n"
    "[2] Bảo hành điện thoại 12 tháng."
)
QUESTION = "Tôi có thể đổi trả trong bao lâu?"
ANSWER = "Sản phẩm được đổi trả trong 30 ngày nếu còn hóa đơn. [1]"
NOVA_LITE = "amazon.nova-lite-v1:0"


def ask(question: str = QUESTION, **overrides) -> GenerationRequest:
    fields = {"system": SYSTEM, "messages": [Message("user", question)], "model": NOVA_LITE}
    return GenerationRequest(**{**fields, **overrides})


@pytest.fixture
def bedrock(bedrock_server) -> BedrockProvider:
    return get_provider("bedrock")


# Converse


def test_bedrock_converse_answers_and_reports_usage(bedrock, bedrock_server):
    generation = bedrock.generate(ask())

    assert generation.text == ANSWER
    assert (generation.provider, generation.model, generation.finish_reason) == ("bedrock", NOVA_LITE, "stop")
    assert generation.usage.input_tokens == count_tokens(SYSTEM) + count_tokens(QUESTION)
    assert generation.usage.output_tokens == count_tokens(ANSWER)
    assert (generation.usage.cached_tokens, generation.usage.thinking_tokens) == (0, 0)


def test_bedrock_converse_sends_system_messages_and_inference_config_signed(bedrock, bedrock_server):
    history = [Message("user", "Xin chào"), Message("assistant", "Chào bạn!"), Message("user", QUESTION)]

    bedrock.generate(ask(messages=history, max_output_tokens=256, temperature=0.3, thinking_budget=2048))

    [call] = bedrock_server.chat_requests()
    assert call.request.path == "/model/amazon.nova-lite-v1%3A0/converse"
    assert call.model == NOVA_LITE
    assert call.body == {
        "messages": [
            {"role": "user", "content": [{"text": "Xin chào"}]},
            {"role": "assistant", "content": [{"text": "Chào bạn!"}]},
            {"role": "user", "content": [{"text": QUESTION}]},
        ],
        "system": [{"text": SYSTEM}],
        "inferenceConfig": {"maxTokens": 256, "temperature": 0.3},  # no thinking fields
    }
    authorization = call.request.headers["authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/us-east-1/bedrock/" in authorization


def test_bedrock_turns_a_history_converse_would_reject_into_alternating_turns(bedrock, bedrock_server):
    history = [
        Message("assistant", "Xin chào! Tôi có thể giúp gì?"),  # the bot's greeting came first
        Message("user", "Cho tôi hỏi"),
        Message("user", " "),
        Message("user", QUESTION),  # sent while a person held the chat
    ]

    bedrock.generate(ask(messages=history))

    [call] = bedrock_server.chat_requests()
    assert call.body["messages"] == [
        {"role": "user", "content": [{"text": "Cho tôi hỏi"}, {"text": QUESTION}]}
    ]


def test_bedrock_counts_cache_reads_inside_the_input_tokens(bedrock, bedrock_server):
    bedrock_server.script_reply(
        "Đổi trả 30 ngày. [1]", input_tokens=200, cache_read_tokens=1000, output_tokens=8
    )

    usage = bedrock.generate(ask()).usage

    assert (usage.input_tokens, usage.cached_tokens, usage.output_tokens) == (1200, 1000, 8)


def test_bedrock_answer_cut_by_max_tokens_finishes_with_max_tokens(bedrock, bedrock_server):
    generation = bedrock.generate(ask(max_output_tokens=3))

    assert generation.finish_reason == "max_tokens"
    assert generation.text == "Sản phẩm được"


def test_bedrock_reaches_a_profile_only_model_through_its_inference_profile(bedrock, bedrock_server):
    profile = "global.anthropic.claude-haiku-4-5-20251001-v1:0"

    assert bedrock.generate(ask(model=profile)).model == profile

    with pytest.raises(PermanentError, match="inference profile"):
        bedrock.generate(ask(model="anthropic.claude-haiku-4-5-20251001-v1:0"))


def test_bedrock_guardrail_intervention_raises_content_blocked(bedrock, bedrock_server):
    bedrock_server.block_next("guardrail_intervened")

    with pytest.raises(ContentBlocked, match="guardrail_intervened"):
        bedrock.generate(ask())


# ConverseStream


def test_bedrock_stream_yields_text_deltas_then_one_generation_with_the_metadata_usage(
    bedrock, bedrock_server
):
    bedrock_server.script_reply("Bạn có 30 ngày để đổi trả sản phẩm. [1]", pieces=4, input_tokens=55)

    items = list(bedrock.stream(ask()))

    deltas, final = items[:-1], items[-1]
    assert len(deltas) == 4
    assert all(isinstance(delta, str) for delta in deltas)
    assert isinstance(final, Generation)
    assert "".join(deltas) == final.text == "Bạn có 30 ngày để đổi trả sản phẩm. [1]"
    assert final.usage.input_tokens == 55
    assert final.usage.output_tokens == count_tokens(final.text)
    assert final.finish_reason == "stop"
    [call] = bedrock_server.chat_requests()
    assert call.request.path == "/model/amazon.nova-lite-v1%3A0/converse-stream"


def test_bedrock_guardrail_in_a_stream_raises_content_blocked_after_its_canned_text(bedrock, bedrock_server):
    bedrock_server.block_next("content_filtered")

    with pytest.raises(StreamInterrupted, match="content_filtered") as raised:
        list(bedrock.stream(ask()))

    assert isinstance(raised.value.__cause__, ContentBlocked)


# Errors


def test_bedrock_throttling_raises_rate_limited_after_one_request(bedrock, bedrock_server):
    bedrock_server.fail_next(429, times=5)

    with pytest.raises(RateLimited, match="ThrottlingException"):
        bedrock.generate(ask())

    assert len(bedrock_server.requests) == 1  # botocore's retries are off; the fallback chain retries


def test_bedrock_validation_exception_raises_permanent_error(bedrock, bedrock_server):
    with pytest.raises(PermanentError, match="ValidationException"):
        bedrock.generate(ask(temperature=1.5))  # Converse accepts 0..1


@pytest.mark.parametrize(
    ("status", "code"), [(500, "InternalServerException"), (503, "ServiceUnavailableException")]
)
def test_bedrock_server_errors_raise_transient_error(bedrock, bedrock_server, status, code):
    bedrock_server.fail_next(status)

    with pytest.raises(TransientError, match=code) as raised:
        bedrock.generate(ask())

    assert not isinstance(raised.value, RateLimited)


def test_bedrock_malformed_body_raises_transient_error(bedrock, bedrock_server):
    bedrock_server.malformed_next()

    with pytest.raises(TransientError, match="unreadable"):
        bedrock.generate(ask())


def test_bedrock_slow_endpoint_raises_transient_error_quickly(bedrock, bedrock_server):
    bedrock_server.latency = 3
    started = time.monotonic()

    with pytest.raises(TransientError, match="Timeout"):
        bedrock.generate(ask(timeout_seconds=0.5))  # botocore's timeouts are whole seconds: 1 s

    assert time.monotonic() - started < 2.5


def test_bedrock_model_stream_error_mid_stream_raises_stream_interrupted_after_the_partial_text(
    bedrock, bedrock_server
):
    bedrock_server.break_stream(after=2, how="error", code="modelStreamErrorException")
    received: list[str] = []

    with pytest.raises(StreamInterrupted, match="ModelStreamErrorException") as raised:
        for item in bedrock.stream(ask()):
            received.append(item)

    assert len(received) == 2
    assert raised.value.partial_text == "".join(received)
    assert ANSWER.startswith(raised.value.partial_text)


def test_bedrock_throttling_event_before_any_text_raises_rate_limited(bedrock, bedrock_server):
    bedrock_server.break_stream(after=0, how="error", code="throttlingException")

    with pytest.raises(RateLimited, match="ThrottlingException"):
        list(bedrock.stream(ask()))


def test_bedrock_throttling_before_a_stream_starts_raises_rate_limited(bedrock, bedrock_server):
    bedrock_server.fail_next(429)

    with pytest.raises(RateLimited):
        list(bedrock.stream(ask()))


def test_bedrock_connection_cut_mid_stream_raises_stream_interrupted(bedrock, bedrock_server):
    bedrock_server.break_stream(after=1, how="cut")

    with pytest.raises(StreamInterrupted, match="could not be reached") as raised:
        list(bedrock.stream(ask()))

    assert raised.value.partial_text


def test_bedrock_corrupt_frame_mid_stream_raises_stream_interrupted(bedrock, bedrock_server):
    bedrock_server.break_stream(after=1, how="malformed")

    with pytest.raises(StreamInterrupted, match="unreadable event stream"):
        list(bedrock.stream(ask()))


def test_bedrock_stalled_stream_times_out_mid_stream(bedrock, bedrock_server):
    bedrock_server.event_delay = 3
    started = time.monotonic()

    with pytest.raises(StreamInterrupted, match="timed out"):
        list(bedrock.stream(ask(timeout_seconds=1)))

    assert time.monotonic() - started < 2.5


def test_bedrock_reuses_one_client_per_whole_second_timeout(bedrock, bedrock_server):
    bedrock.generate(ask(timeout_seconds=4.2))
    bedrock.generate(ask(timeout_seconds=4.9))
    list(bedrock.stream(ask(timeout_seconds=5)))

    assert chat_bedrock._client(timeout_seconds=4.2) is chat_bedrock._client(timeout_seconds=5)
    assert chat_bedrock._client(timeout_seconds=6) is not chat_bedrock._client(timeout_seconds=5)


# Configuration


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path, settings):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_BEARER_TOKEN_BEDROCK",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    settings.BEDROCK_ENDPOINT_URL = None


def test_bedrock_is_not_configured_without_credentials_or_endpoint(no_aws_credentials):
    assert chat_bedrock.is_configured() is False


def test_bedrock_is_configured_by_credentials_in_the_environment(no_aws_credentials, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")

    assert chat_bedrock.is_configured() is True


def test_bedrock_is_configured_by_an_endpoint_url(no_aws_credentials, settings):
    settings.BEDROCK_ENDPOINT_URL = "https://bedrock-runtime.ap-southeast-1.amazonaws.com"

    assert chat_bedrock.is_configured() is True
