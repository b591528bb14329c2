"""Chat answers behind one interface: Gemini, Bedrock and the extractive (no-LLM) provider.

Callers build a `GenerationRequest` (model ids come from configuration), then either
ask one provider (`get_provider(name).generate(request)`) or, in the answer
pipeline, `generate_with_fallback` / `stream_with_fallback`, which retry, fall back
and record every attempt for the usage ledger. Provider errors are
`TransientError` (with `RateLimited` and `StreamInterrupted`) and `PermanentError`
(with `ContentBlocked` and `NoSources`), shared with the embedding providers.
"""

from chatbot.llm.base import (
    ContentBlocked,
    Generation,
    GenerationRequest,
    LLMProvider,
    Message,
    NoSources,
    PermanentError,
    ProviderError,
    RateLimited,
    Source,
    StreamInterrupted,
    TransientError,
    Usage,
)
from chatbot.llm.fallback import (
    Attempt,
    FallbackResult,
    RetryPolicy,
    generate_with_fallback,
    stream_with_fallback,
)
from chatbot.llm.registry import available_providers, get_provider, is_available

__all__ = [
    "Attempt",
    "ContentBlocked",
    "FallbackResult",
    "Generation",
    "GenerationRequest",
    "LLMProvider",
    "Message",
    "NoSources",
    "PermanentError",
    "ProviderError",
    "RateLimited",
    "RetryPolicy",
    "Source",
    "StreamInterrupted",
    "TransientError",
    "Usage",
    "available_providers",
    "generate_with_fallback",
    "get_provider",
    "is_available",
    "stream_with_fallback",
]
