"""The fallback chain and the provider registry, with the real providers against the loopback fakes
where the network matters, and scripted providers with a fake clock where time does. No database."""

import logging
from collections import deque
from collections.abc import Iterator

import pytest

from chatbot.llm import (
    FallbackResult,
    Generation,
    GenerationRequest,
    Message,
    PermanentError,
    Source,
    TransientError,
    Usage,
    available_providers,
    generate_with_fallback,
    get_provider,
    is_available,
    stream_with_fallback,
)
from chatbot.llm.extractive import LABELS

SOURCES = [
    Source(
        number=1,
        title="Giờ mở cửa",
        heading="",
        text="Cửa hàng mở cửa từ 8 giờ sáng đến 10 giờ tối tất cả các ngày trong tuần.",
    )
]
SYSTEM = (
    "Answer from the sources.\n[1] Cửa hàng mở cửa từ 8 giờ sáng đến 10 giờ tối tất cả các ngày trong tuần."
)
QUESTION = "Cửa hàng mở cửa lúc mấy giờ?"


def request(
    model: str, *, sources: list[Source] = SOURCES, timeout_seconds: float = 20.0
) -> GenerationRequest:
    return GenerationRequest(
        system=SYSTEM,
        messages=[Message("user", QUESTION)],
        model=model,
        sources=sources,
        timeout_seconds=timeout_seconds,
    )


GEMINI = ("gemini", request("gemini-2.5-flash"))
BEDROCK = ("bedrock", request("amazon.nova-lite-v1:0"))


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps or a provider works."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedProvider:
    """Raises or answers from a script; each call takes `seconds` of fake time (cut at its timeout)."""

    def __init__(self, name: str, script: list[Exception | str], clock: FakeClock, seconds: float = 0.0):
        self.name = name
        self.script = deque(script)
        self.clock = clock
        self.seconds = seconds
        self.requests: list[GenerationRequest] = []

    def generate(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        self.clock.now += min(self.seconds, request.timeout_seconds)
        step = self.script.popleft()
        if isinstance(step, Exception):
            raise step
        return Generation(step, request.model, self.name, Usage(10, 3), "stop", latency_ms=1)

    def stream(self, request: GenerationRequest) -> Iterator[str | Generation]:
        generation = self.generate(request)
        yield generation.text
        yield generation


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def real_or(scripted: dict[str, ScriptedProvider]):
    return lambda name: scripted.get(name) or get_provider(name)


def split(items: list) -> tuple[list[str], FallbackResult]:
    *deltas, result = items
    assert all(isinstance(delta, str) for delta in deltas)
    assert isinstance(result, FallbackResult)
    return deltas, result


# generate_with_fallback against the fakes


def test_fallback_retries_gemini_after_two_503s_and_answers_with_gemini(gemini_server, clock):
    gemini_server.fail_next(503, times=2)

    result = generate_with_fallback(
        [GEMINI, BEDROCK], budget_seconds=20, sleep=clock.sleep, clock=clock, rng=lambda: 1.0
    )

    assert result.generation.provider == "gemini"
    assert result.generation.text.endswith("[1]")
    assert not result.fell_back
    assert [(attempt.provider, attempt.number, attempt.outcome) for attempt in result.attempts] == [
        ("gemini", 1, "transient"),
        ("gemini", 2, "transient"),
        ("gemini", 3, "ok"),
    ]
    assert result.attempts[0].error_class == "TransientError"
    assert "UNAVAILABLE" in result.attempts[0].error
    assert result.attempts[-1].usage == result.generation.usage
    assert clock.sleeps == [0.5, 1.0]  # exponential: base 0.5 s, doubled; full jitter scaled by rng
    assert len(gemini_server.chat_requests()) == 3


def test_fallback_jitters_the_backoff_between_zero_and_the_exponential_cap(gemini_server, clock):
    gemini_server.fail_next(500, times=2)

    generate_with_fallback([GEMINI], budget_seconds=20, sleep=clock.sleep, clock=clock, rng=lambda: 0.25)

    assert clock.sleeps == [0.125, 0.25]


def test_fallback_does_not_retry_a_permanent_error_and_falls_back_to_bedrock(
    gemini_server, bedrock_server, clock
):
    gemini_server.fail_next(400, message="Request contains an invalid argument.")

    result = generate_with_fallback([GEMINI, BEDROCK], budget_seconds=20, sleep=clock.sleep, clock=clock)

    assert result.generation.provider == "bedrock"
    assert result.generation.model == "amazon.nova-lite-v1:0"
    assert result.fell_back
    assert [(attempt.provider, attempt.outcome) for attempt in result.attempts] == [
        ("gemini", "permanent"),
        ("bedrock", "ok"),
    ]
    assert result.attempts[0].model == "gemini-2.5-flash"
    assert clock.sleeps == []
    assert len(gemini_server.chat_requests()) == 1


def test_fallback_ends_with_an_extractive_answer_when_gemini_and_bedrock_fail(
    gemini_server, bedrock_server, clock
):
    gemini_server.fail_next(404)
    bedrock_server.fail_next(503, times=3)

    result = generate_with_fallback([GEMINI, BEDROCK], budget_seconds=20, sleep=clock.sleep, clock=clock)

    assert result.generation.provider == "extractive"
    assert result.generation.text.startswith(LABELS["vi"][0])
    assert "[1]" in result.generation.text
    assert [(attempt.provider, attempt.outcome) for attempt in result.attempts] == [
        ("gemini", "permanent"),
        ("bedrock", "transient"),
        ("bedrock", "transient"),
        ("bedrock", "transient"),
        ("extractive", "ok"),
    ]
    assert result.attempts[-1].model == "extractive"
    assert len(clock.sleeps) == 2


def test_fallback_waits_for_the_retry_after_of_a_rate_limit_when_it_fits_the_budget(gemini_server, clock):
    gemini_server.fail_next(429, retry_delay="3s")

    result = generate_with_fallback([GEMINI], budget_seconds=20, sleep=clock.sleep, clock=clock)

    assert result.generation.provider == "gemini"
    assert clock.sleeps == [3.0]
    assert [attempt.outcome for attempt in result.attempts] == ["rate_limited", "ok"]


def test_fallback_moves_on_at_once_when_the_retry_after_exceeds_the_budget(
    gemini_server, bedrock_server, clock
):
    gemini_server.fail_next(429, retry_delay="60s")

    result = generate_with_fallback([GEMINI, BEDROCK], budget_seconds=10, sleep=clock.sleep, clock=clock)

    assert result.generation.provider == "bedrock"
    assert clock.sleeps == []
    assert [attempt.outcome for attempt in result.attempts] == ["rate_limited", "ok"]


# Budget, with scripted providers on a fake clock


def test_fallback_keeps_to_the_total_budget_and_still_answers_with_extractive(clock):
    overloaded = TransientError("Gemini 503 UNAVAILABLE: overloaded")
    gemini = ScriptedProvider("gemini", [overloaded] * 3, clock, seconds=4)
    bedrock = ScriptedProvider("bedrock", [TransientError("Bedrock timed out")] * 3, clock, seconds=30)
    started = clock.now

    result = generate_with_fallback(
        [GEMINI, BEDROCK],
        budget_seconds=10,
        sleep=clock.sleep,
        clock=clock,
        rng=lambda: 1.0,
        providers=real_or({"gemini": gemini, "bedrock": bedrock}),
    )

    assert result.generation.provider == "extractive"
    assert clock.now - started <= 10
    # Each try's timeout is what is left of the budget. gemini: 4 s, a 0.5 s pause, 4 s; the next
    # pause (1 s) would leave under the 1 s a try needs, so bedrock gets the last 1.5 s.
    assert [request.timeout_seconds for request in gemini.requests] == [10, 5.5]
    assert [request.timeout_seconds for request in bedrock.requests] == [pytest.approx(1.5)]
    assert clock.sleeps == [0.5]
    assert [(attempt.provider, attempt.outcome) for attempt in result.attempts] == [
        ("gemini", "transient"),
        ("gemini", "transient"),
        ("bedrock", "transient"),
        ("extractive", "ok"),
    ]
    assert [attempt.latency_ms for attempt in result.attempts[:3]] == [4000, 4000, 1500]


def test_fallback_skips_providers_when_the_budget_is_spent_and_answers_with_extractive(clock):
    gemini = ScriptedProvider("gemini", ["unused"], clock)

    result = generate_with_fallback(
        [GEMINI, BEDROCK],
        budget_seconds=0.5,
        sleep=clock.sleep,
        clock=clock,
        providers=real_or({"gemini": gemini}),
    )

    assert result.generation.provider == "extractive"
    assert gemini.requests == []
    assert [(attempt.provider, attempt.outcome) for attempt in result.attempts] == [
        ("gemini", "skipped"),
        ("bedrock", "skipped"),
        ("extractive", "ok"),
    ]
    assert "budget" in result.attempts[0].error


def test_fallback_records_an_unexpected_exception_and_still_answers(clock, caplog):
    broken = ScriptedProvider("gemini", [RuntimeError("SDK bug")], clock)

    with caplog.at_level(logging.ERROR, logger="chatbot.llm.fallback"):
        result = generate_with_fallback(
            [GEMINI], budget_seconds=10, sleep=clock.sleep, clock=clock, providers=real_or({"gemini": broken})
        )

    assert result.generation.provider == "extractive"
    assert (result.attempts[0].outcome, result.attempts[0].error_class) == ("error", "RuntimeError")
    assert "unexpected error" in caplog.text


def test_fallback_without_sources_returns_no_generation_when_every_provider_fails(clock):
    gemini = ScriptedProvider("gemini", [PermanentError("GEMINI_API_KEY is not set")], clock)

    result = generate_with_fallback(
        [("gemini", request("gemini-2.5-flash", sources=[]))],
        budget_seconds=10,
        sleep=clock.sleep,
        clock=clock,
        providers=real_or({"gemini": gemini}),
    )

    assert result.generation is None
    assert not result.answered
    assert [(attempt.provider, attempt.outcome) for attempt in result.attempts] == [
        ("gemini", "permanent"),
        ("extractive", "no_sources"),
    ]


def test_fallback_needs_a_plan():
    with pytest.raises(ValueError, match="at least one provider"):
        generate_with_fallback([], budget_seconds=10)


# stream_with_fallback


def test_stream_fallback_streams_gemini_deltas_then_the_result(gemini_server, clock):
    deltas, result = split(
        list(stream_with_fallback([GEMINI], budget_seconds=20, sleep=clock.sleep, clock=clock))
    )

    assert len(deltas) > 1
    assert "".join(deltas) == result.generation.text
    assert result.generation.provider == "gemini"
    assert [attempt.outcome for attempt in result.attempts] == ["ok"]


def test_stream_fallback_falls_back_transparently_when_gemini_fails_before_any_text(
    gemini_server, bedrock_server, clock
):
    gemini_server.fail_next(503, times=3)

    deltas, result = split(
        list(stream_with_fallback([GEMINI, BEDROCK], budget_seconds=20, sleep=clock.sleep, clock=clock))
    )

    assert "".join(deltas) == result.generation.text  # only bedrock's text reached the caller
    assert result.generation.provider == "bedrock"
    assert result.fell_back and not result.interrupted
    assert [(attempt.provider, attempt.outcome) for attempt in result.attempts] == [
        ("gemini", "transient"),
        ("gemini", "transient"),
        ("gemini", "transient"),
        ("bedrock", "ok"),
    ]


def test_stream_fallback_stops_with_the_partial_text_when_gemini_breaks_mid_stream(
    gemini_server, bedrock_server, clock
):
    gemini_server.break_stream(after=1, how="cut")

    deltas, result = split(
        list(stream_with_fallback([GEMINI, BEDROCK], budget_seconds=20, sleep=clock.sleep, clock=clock))
    )

    assert len(deltas) == 1
    assert result.interrupted
    assert result.generation.text == deltas[0]
    assert (result.generation.provider, result.generation.finish_reason) == ("gemini", "interrupted")
    assert [(attempt.provider, attempt.outcome) for attempt in result.attempts] == [("gemini", "interrupted")]
    assert result.attempts[0].error_class == "StreamInterrupted"
    assert bedrock_server.requests == []  # the caller already showed text: no second answer after it


def test_stream_fallback_ends_with_an_extractive_answer_when_every_provider_fails(clock):
    gemini = ScriptedProvider("gemini", [PermanentError("unknown model")], clock)
    bedrock = ScriptedProvider("bedrock", [PermanentError("AccessDeniedException")], clock)

    deltas, result = split(
        list(
            stream_with_fallback(
                [GEMINI, BEDROCK],
                budget_seconds=20,
                sleep=clock.sleep,
                clock=clock,
                providers=real_or({"gemini": gemini, "bedrock": bedrock}),
            )
        )
    )

    assert "".join(deltas) == result.generation.text
    assert result.generation.provider == "extractive"
    assert [attempt.outcome for attempt in result.attempts] == ["permanent", "permanent", "ok"]


def test_stream_fallback_without_sources_yields_only_a_result_without_generation(clock):
    gemini = ScriptedProvider("gemini", [TransientError("down")] * 3, clock)

    items = list(
        stream_with_fallback(
            [("gemini", request("gemini-2.5-flash", sources=[]))],
            budget_seconds=20,
            sleep=clock.sleep,
            clock=clock,
            providers=real_or({"gemini": gemini}),
        )
    )

    [result] = items
    assert result.generation is None
    assert result.attempts[-1].outcome == "no_sources"


# Registry


def test_get_provider_builds_each_provider_once():
    for name in ("gemini", "bedrock", "extractive"):
        provider = get_provider(name)
        assert provider is get_provider(name)
        assert provider.name == name


def test_get_provider_with_an_unknown_name_raises_key_error_naming_it():
    with pytest.raises(KeyError, match="openai"):
        get_provider("openai")


def test_available_providers_lists_configured_vendors_then_extractive(
    settings, gemini_server, bedrock_server
):
    assert available_providers() == ["gemini", "bedrock", "extractive"]


def test_available_providers_is_only_extractive_without_configuration(settings, monkeypatch, tmp_path):
    settings.GEMINI_API_KEY = ""
    settings.BEDROCK_ENDPOINT_URL = None
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))

    assert available_providers() == ["extractive"]
    assert not is_available("gemini")
    assert is_available("extractive")
