"""Ask providers in turn until one answers, within a total time budget.

Per provider: retry TransientError / RateLimited with exponential backoff and full
jitter (a RateLimited `retry_after` is honoured when it fits in what is left of the
budget, otherwise the next provider is tried at once), never retry PermanentError,
then move on. The extractive provider is always the last resort: it needs no
network, so it runs even when the budget is spent, and it only fails when there
are no sources at all (then `FallbackResult.generation` is None and the caller
answers "I don't know" in the bot's words). Nothing here raises.

Every try is recorded as an `Attempt` (provider, model, outcome, error class,
latency, usage) so the caller can write one ledger row per billed call and the
admin can show "fell back to bedrock".

Streaming: a provider that fails before its first text delta is retried or
replaced transparently. Once text has reached the caller it cannot be taken back,
so a failure mid-stream ends the stream: the final result carries the partial
text as a Generation with finish_reason "interrupted", and the caller finishes
the message with a note (and may offer to ask again).

The budget bounds the waits between tries and each try's timeout (a try starts
only with at least `RetryPolicy.min_attempt_seconds` left). Vendor timeouts apply
per network phase, so a slow trickle can overrun it by up to one timeout, and a
healthy stream is never cut for the budget's sake.
"""

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from chatbot.llm.base import (
    FINISH_INTERRUPTED,
    NO_USAGE,
    ContentBlocked,
    Generation,
    GenerationRequest,
    LLMProvider,
    NoSources,
    PermanentError,
    ProviderError,
    RateLimited,
    StreamInterrupted,
    TransientError,
    Usage,
)
from chatbot.llm.registry import get_provider

logger = logging.getLogger(__name__)

LAST_RESORT = "extractive"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts_per_provider: int = 3
    base_delay: float = 0.5  # seconds; the cap doubles with each retry up to max_delay
    max_delay: float = 4.0
    # Less time than this and an LLM call would likely time out after being billed.
    min_attempt_seconds: float = 1.0


DEFAULT_POLICY = RetryPolicy()

Outcome = Literal[
    "ok",  # answered
    "rate_limited",  # RateLimited
    "transient",  # TransientError: 5xx, timeout, unreadable response
    "permanent",  # PermanentError: bad request, unknown model, missing key
    "blocked",  # ContentBlocked: the vendor refused to answer
    "no_sources",  # the extractive provider had nothing to quote
    "interrupted",  # a stream broke after some text reached the caller
    "skipped",  # not tried: too little of the budget was left
    "error",  # an unexpected exception (a bug or an unmapped SDK error), logged
]


@dataclass(frozen=True)
class Attempt:
    provider: str
    model: str
    number: int  # 1 for the first try of this provider, 2 for its first retry, ...
    outcome: Outcome
    latency_ms: int
    error_class: str = ""  # e.g. "RateLimited"; empty when ok
    error: str = ""  # the error message, for the admin
    usage: Usage | None = None  # when the vendor reported it (ok, and some interrupted streams)


@dataclass(frozen=True)
class FallbackResult:
    generation: Generation | None  # None only when even the extractive provider had no sources
    attempts: tuple[Attempt, ...]

    @property
    def answered(self) -> bool:
        return self.generation is not None

    @property
    def interrupted(self) -> bool:
        """A stream broke mid-way; `generation.text` is what the caller already streamed."""
        return self.generation is not None and self.generation.finish_reason == FINISH_INTERRUPTED

    @property
    def fell_back(self) -> bool:
        """Someone other than the first provider asked for answered."""
        return self.generation is not None and self.generation.provider != self.attempts[0].provider


Plan = Sequence[tuple[str, GenerationRequest]]


def generate_with_fallback(
    plan: Plan,
    *,
    budget_seconds: float,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
    providers: Callable[[str], LLMProvider] = get_provider,
) -> FallbackResult:
    """The first answer from `plan`, a list of (provider name, request) in order of preference.

    The extractive provider is appended (with the last request) when the plan lacks it.
    """

    # The streaming loop with providers that answer in one piece: no text reaches the
    # caller before the final result, so the retries and fallbacks are the same.
    def blocking(name: str) -> LLMProvider:
        return _Blocking(providers(name))

    for item in stream_with_fallback(
        plan,
        budget_seconds=budget_seconds,
        policy=policy,
        sleep=sleep,
        clock=clock,
        rng=rng,
        providers=blocking,
    ):
        if isinstance(item, FallbackResult):
            return item
    raise AssertionError("stream_with_fallback ended without a result")


class _Blocking:
    """A provider's blocking call seen as a stream of one item, the final Generation."""

    def __init__(self, provider: LLMProvider) -> None:
        self.provider = provider
        self.name = provider.name

    def generate(self, request: GenerationRequest) -> Generation:
        return self.provider.generate(request)

    def stream(self, request: GenerationRequest) -> Iterator[Generation]:
        yield self.provider.generate(request)


def stream_with_fallback(
    plan: Plan,
    *,
    budget_seconds: float,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
    providers: Callable[[str], LLMProvider] = get_provider,
) -> Iterator[str | FallbackResult]:
    """Text deltas from the first provider that starts answering, then exactly one FallbackResult."""
    run = _Run(budget_seconds, policy, sleep=sleep, clock=clock, rng=rng)
    for name, request in _with_last_resort(plan):
        provider = providers(name)
        number = 0
        while True:
            number += 1
            timed = run.timed_request(name, request)
            if timed is None:
                run.skip(name, request, number)
                break
            started = clock()
            streamed: list[str] = []
            try:
                for item in provider.stream(timed):
                    if isinstance(item, Generation):
                        run.succeeded(name, request, number, started, item)
                        yield run.result(item)
                        return
                    streamed.append(item)
                    yield item
                raise TransientError(f"{name} ended its stream without a final result")
            except Exception as error:  # ProviderErrors, and anything unexpected (see above)
                if not isinstance(error, ProviderError):
                    logger.exception("LLM provider %s raised an unexpected error", name)
                if streamed:
                    yield run.interrupted(name, request, number, started, error, "".join(streamed))
                    return
                run.failed(name, request, number, started, error)
                if isinstance(error, ProviderError) and run.wait_to_retry(name, error, number):
                    continue
                break
    yield run.result(None)


def _with_last_resort(plan: Plan) -> list[tuple[str, GenerationRequest]]:
    if not plan:
        raise ValueError("the fallback plan needs at least one provider")
    steps = list(plan)
    if all(name != LAST_RESORT for name, _ in steps):
        steps.append((LAST_RESORT, steps[-1][1]))
    return steps


class _Run:
    """The budget, the backoff policy and the attempts of one fallback run."""

    def __init__(
        self,
        budget_seconds: float,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        rng: Callable[[], float],
    ) -> None:
        self.budget_seconds = budget_seconds
        self.deadline = clock() + budget_seconds
        self.policy = policy
        self.sleep = sleep
        self.clock = clock
        self.rng = rng
        self.attempts: list[Attempt] = []

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def timed_request(self, name: str, request: GenerationRequest) -> GenerationRequest | None:
        """`request` with its timeout cut to the budget left, or None when too little is left."""
        if name == LAST_RESORT:
            return request  # local and instant: it runs whatever the budget says
        remaining = self.remaining()
        if remaining < self.policy.min_attempt_seconds:
            return None
        return replace(request, timeout_seconds=min(request.timeout_seconds, remaining))

    def wait_to_retry(self, name: str, error: ProviderError, number: int) -> bool:
        """Sleep before retrying `name` and return True, or False to move on to the next provider."""
        if (
            name == LAST_RESORT
            or not isinstance(error, TransientError)
            or number >= self.policy.max_attempts_per_provider
        ):
            return False
        retry_after = error.retry_after if isinstance(error, RateLimited) else None
        if retry_after is not None:
            delay = retry_after  # the vendor knows when its quota refills; earlier is a wasted call
        else:
            # Full jitter: spreads the retries of many conversations hit by the same outage.
            delay = self.rng() * min(self.policy.max_delay, self.policy.base_delay * 2 ** (number - 1))
        if delay + self.policy.min_attempt_seconds > self.remaining():
            return False
        self.sleep(delay)
        return True

    def _record(
        self,
        name: str,
        request: GenerationRequest,
        number: int,
        outcome: Outcome,
        started: float,
        error: BaseException | None = None,
        usage: Usage | None = None,
    ) -> None:
        latency_ms = max(0, round((self.clock() - started) * 1000))
        self.attempts.append(
            Attempt(
                provider=name,
                model=request.model if name != LAST_RESORT else LAST_RESORT,
                number=number,
                outcome=outcome,
                latency_ms=latency_ms,
                error_class="" if error is None else type(error).__name__,
                error="" if error is None else str(error),
                usage=usage,
            )
        )

    def succeeded(
        self, name: str, request: GenerationRequest, number: int, started: float, generation: Generation
    ) -> None:
        self._record(name, request, number, "ok", started, usage=generation.usage)

    def failed(
        self, name: str, request: GenerationRequest, number: int, started: float, error: Exception
    ) -> None:
        self._record(name, request, number, _outcome(error), started, error)

    def skip(self, name: str, request: GenerationRequest, number: int) -> None:
        left = f"only {max(0.0, self.remaining()):.2f} s of the {self.budget_seconds:g} s budget left"
        self.attempts.append(
            Attempt(
                provider=name, model=request.model, number=number, outcome="skipped", latency_ms=0, error=left
            )
        )

    def interrupted(
        self,
        name: str,
        request: GenerationRequest,
        number: int,
        started: float,
        error: Exception,
        text: str,
    ) -> "FallbackResult":
        usage = error.usage if isinstance(error, StreamInterrupted) else None
        self._record(name, request, number, "interrupted", started, error, usage)
        generation = Generation(
            text=text,
            model=request.model,
            provider=name,
            usage=usage or NO_USAGE,
            finish_reason=FINISH_INTERRUPTED,
            latency_ms=self.attempts[-1].latency_ms,
        )
        return self.result(generation)

    def result(self, generation: Generation | None) -> FallbackResult:
        return FallbackResult(generation=generation, attempts=tuple(self.attempts))


def _outcome(error: Exception) -> Outcome:
    if isinstance(error, StreamInterrupted):
        return "interrupted"
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, TransientError):
        return "transient"
    if isinstance(error, NoSources):
        return "no_sources"
    if isinstance(error, ContentBlocked):
        return "blocked"
    if isinstance(error, PermanentError):
        return "permanent"
    return "error"
