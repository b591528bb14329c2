"""The one interface every chat provider implements, and the errors it may raise.

Providers share the error hierarchy of the embedding providers
(`knowledge.embedding.errors`), so a caller catches one `TransientError` /
`RateLimited` / `PermanentError` whichever vendor or app raised it.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from knowledge.embedding.errors import PermanentError, ProviderError, RateLimited, TransientError

__all__ = [
    "ContentBlocked",
    "Generation",
    "GenerationRequest",
    "LLMProvider",
    "Message",
    "NoSources",
    "PermanentError",
    "ProviderError",
    "RateLimited",
    "Source",
    "StreamInterrupted",
    "TransientError",
    "Usage",
]

Role = Literal["user", "assistant"]

# Normalised finish reasons; anything else is the vendor's own value, lower-cased.
FINISH_STOP = "stop"
FINISH_MAX_TOKENS = "max_tokens"  # the answer was cut by max_output_tokens
FINISH_INTERRUPTED = "interrupted"  # only in fallback results: a stream that broke after some text


@dataclass(frozen=True)
class Message:
    role: Role
    text: str


@dataclass(frozen=True)
class Source:
    """A numbered knowledge passage: [number] in the prompt and in the answer's citations."""

    number: int
    title: str  # document title
    heading: str  # section heading inside the document, may be empty
    text: str


@dataclass(frozen=True)
class GenerationRequest:
    system: str  # system instruction (rules, persona, the numbered sources for LLM providers)
    messages: Sequence[Message]  # history, then the current user turn last
    model: str  # vendor model id, from configuration; the extractive provider ignores it
    max_output_tokens: int = 512
    temperature: float = 0.2
    # 0 = thinking off where the model allows it; None = the model's default. Bedrock ignores it.
    thinking_budget: int | None = 0
    sources: Sequence[Source] = ()  # ranked best first; only the extractive provider reads them
    timeout_seconds: float = 20.0  # per network phase (connect, each read), not a total deadline
    language: str = "vi"  # the user's language, for the extractive provider's wording ("vi" | "en")

    def __post_init__(self) -> None:
        if not self.messages or self.messages[-1].role != "user":
            raise ValueError("a generation request needs messages ending with the user's turn")
        if self.max_output_tokens < 1:
            raise ValueError("max_output_tokens must be at least 1")
        if not self.timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")

    @property
    def question(self) -> str:
        """The current user turn."""
        return self.messages[-1].text


@dataclass(frozen=True)
class Usage:
    """Tokens as the vendor reports them, for the cost ledger.

    `input_tokens` counts every prompt token, cached ones included; `cached_tokens`
    is the part read from a cache (billed at the cache rate). `output_tokens` is the
    visible answer; `thinking_tokens` come on top and are billed at the output rate.
    """

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    thinking_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.thinking_tokens


NO_USAGE = Usage(input_tokens=0, output_tokens=0)


@dataclass(frozen=True)
class Generation:
    text: str
    model: str  # the model id that was asked for (the key of the price list)
    provider: str  # "gemini" | "bedrock" | "extractive"
    usage: Usage
    finish_reason: str  # "stop" | "max_tokens" | "interrupted" | a vendor value, lower-cased
    latency_ms: int


class LLMProvider(Protocol):
    name: str  # "gemini" | "bedrock" | "extractive"

    def generate(self, request: GenerationRequest) -> Generation: ...

    def stream(self, request: GenerationRequest) -> Iterator[str | Generation]:
        """Text deltas as they arrive, then exactly one final Generation (full text, usage).

        Nothing is sent before the first `next()`. Errors before any text are the
        provider's usual errors; a failure after some text raises StreamInterrupted.
        """
        ...


class ContentBlocked(PermanentError):
    """The vendor refused to answer (safety, recitation, blocklist): another provider may not."""


class StreamInterrupted(TransientError):
    """A stream failed after some text was yielded; the caller already holds `partial_text`."""

    def __init__(self, message: str, *, partial_text: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.partial_text = partial_text
        self.usage = usage  # what the vendor reported before the break, if anything


class NoSources(PermanentError):
    """The extractive provider was asked to answer without any passage to quote.

    The caller answers "I don't know" (or hands over to a person) in the bot's words.
    """
