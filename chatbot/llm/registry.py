"""Chat providers by name, and which of them this deployment can use.

Vendor modules are imported only when a provider is first built or checked, so
importing the registry stays cheap and works without the SDKs' settings.
"""

import threading

from django.conf import settings

from chatbot.llm.base import LLMProvider

PROVIDERS = ("gemini", "bedrock", "extractive")  # also the order of preference

_providers: dict[str, LLMProvider] = {}
_providers_lock = threading.Lock()


def get_provider(name: str) -> LLMProvider:
    """The provider called `name`, built once per process (providers hold no state; clients are cached)."""
    if name not in PROVIDERS:
        raise KeyError(f"unknown LLM provider {name!r}; known providers: {', '.join(PROVIDERS)}")
    with _providers_lock:
        provider = _providers.get(name)
        if provider is None:
            provider = _providers[name] = _build(name)
    return provider


def _build(name: str) -> LLMProvider:
    if name == "gemini":
        from chatbot.llm.gemini import GeminiProvider

        return GeminiProvider()
    if name == "bedrock":
        from chatbot.llm.bedrock import BedrockProvider

        return BedrockProvider()
    from chatbot.llm.extractive import ExtractiveProvider

    return ExtractiveProvider()


def is_available(name: str) -> bool:
    """Whether `name` can answer here, judged from configuration alone (no network call).

    - gemini: GEMINI_API_KEY is set.
    - bedrock: BEDROCK_ENDPOINT_URL is set, or AWS credentials are found without
      asking the EC2 metadata service (see `chatbot.llm.bedrock.is_configured`).
    - extractive: always.
    """
    if name == "gemini":
        return bool(settings.GEMINI_API_KEY)
    if name == "bedrock":
        from chatbot.llm.bedrock import is_configured

        return is_configured()
    if name == "extractive":
        return True
    raise KeyError(f"unknown LLM provider {name!r}; known providers: {', '.join(PROVIDERS)}")


def available_providers() -> list[str]:
    """The usable providers in order of preference; always ends with "extractive"."""
    return [name for name in PROVIDERS if is_available(name)]
