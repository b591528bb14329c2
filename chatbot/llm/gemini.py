"""Chat answers from Gemini (Developer API) through google-genai.

The only chatbot module that imports google.genai. One client per process and
(key, base URL): a temporary client closes its HTTP pool in `__del__` mid-call, and
a shared one keeps connections warm. Each request sets its own timeout (ms, per
connect/read phase) through `http_options`, so one client serves every timeout.
The SDK's retries stay off: the fallback chain decides what to retry, and the SDK
would ignore RetryInfo anyway. Errors map exactly like the embedding provider's.
"""

import json
import re
import time
from collections.abc import Generator, Iterator

from django.conf import settings
from google import genai
from google.genai import errors, types

from chatbot.llm.base import (
    FINISH_MAX_TOKENS,
    FINISH_STOP,
    ContentBlocked,
    Generation,
    GenerationRequest,
    PermanentError,
    ProviderError,
    StreamInterrupted,
    TransientError,
    Usage,
)

# Shared on purpose with the embedding provider: same SDK, same error semantics.
from knowledge.embedding.gemini import TRANSPORT_ERRORS, client_for
from knowledge.embedding.gemini import reset_clients as reset_embedding_clients
from knowledge.embedding.gemini import translate_error as _translate_api_error

# v1beta: the more complete surface (systemInstruction, thinkingConfig); the 3.x SDK defaults to v1.
API_VERSION = "v1beta"
# Only a backstop for calls that forget a per-request timeout; requests always set their own.
CLIENT_TIMEOUT_MS = 60_000

# Finish reasons that mean the vendor refused or withheld the answer (types.FinishReason).
_BLOCKED = {
    "SAFETY",
    "RECITATION",
    "LANGUAGE",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
}
_FINISH = {"STOP": FINISH_STOP, "MAX_TOKENS": FINISH_MAX_TOKENS}

# What the SDK raises: API errors (UnknownApiResponseError and client-side validation
# are ValueErrors) and its HTTP library's timeouts and connection failures.
_SDK_ERRORS: tuple[type[Exception], ...] = (errors.APIError, ValueError, *TRANSPORT_ERRORS)


def _client() -> genai.Client:
    api_key = settings.GEMINI_API_KEY
    if not api_key:
        raise PermanentError("GEMINI_API_KEY is not set")
    return client_for(
        api_key=api_key, base_url=settings.GEMINI_BASE_URL or None, timeout_ms=CLIENT_TIMEOUT_MS
    )


def reset_clients() -> None:
    """Close and forget every cached client (tests, or after settings change)."""
    reset_embedding_clients()


_GENERATION = re.compile(r"^(?:models/)?gemini-(\d+)(?:\.(\d+))?")


def thinking_config(model: str, budget: int | None) -> types.ThinkingConfig | None:
    """The thinking settings that ask `model` for `budget` thinking tokens.

    Not in our protocol spec; from Google's thinking guide, so re-check with new models:
    - None: send nothing, the model decides (most think by default, which costs output tokens).
      Models before 2.5 do not think, so they never get a thinking config.
    - Gemini 2.x takes `thinking_budget` (0 = off, -1 = dynamic); 2.5 Pro cannot go
      below 128 tokens, so 0 becomes 128 there rather than a 400.
    - Gemini 3 and later replaced budgets with levels: 0 becomes the lowest level,
      MINIMAL for Flash models, LOW otherwise (Pro cannot stop thinking). A positive
      budget is still sent as `thinking_budget`, which Google accepts for compatibility.
    """
    if budget is None:
        return None
    match = _GENERATION.match(model)
    if match is None:  # not a Gemini family we know: pass the budget through
        return types.ThinkingConfig(thinking_budget=budget)
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    if (major, minor) < (2, 5):
        return None  # models before 2.5 do not think; a thinking config is not theirs to take
    if major >= 3:
        if budget == 0:
            level = types.ThinkingLevel.MINIMAL if "flash" in model else types.ThinkingLevel.LOW
            return types.ThinkingConfig(thinking_level=level)
        return types.ThinkingConfig(thinking_budget=budget)
    if budget == 0 and "-pro" in model:
        return types.ThinkingConfig(thinking_budget=128)
    return types.ThinkingConfig(thinking_budget=budget)


class GeminiProvider:
    name = "gemini"

    def generate(self, request: GenerationRequest) -> Generation:
        client = _client()
        started = time.monotonic()
        try:
            response = client.models.generate_content(
                model=request.model, contents=_contents(request), config=_config(request)
            )
        except _SDK_ERRORS as error:
            raise _translate(error) from error
        text, finish = _answer(response)
        if not text or finish in _BLOCKED:  # a refusal may come with part of an answer: never show it
            raise _no_answer(response, finish)
        return Generation(
            text=text,
            model=request.model,
            provider=self.name,
            usage=_usage(response.usage_metadata),
            finish_reason=_FINISH.get(finish, finish.lower()),
            latency_ms=_elapsed_ms(started),
        )

    def stream(self, request: GenerationRequest) -> Iterator[str | Generation]:
        client = _client()
        started = time.monotonic()
        parts: list[str] = []
        finish = ""
        last: types.GenerateContentResponse | None = None
        # Lazy: the request is sent on the first next(), so errors surface inside the loop.
        chunks = client.models.generate_content_stream(
            model=request.model, contents=_contents(request), config=_config(request)
        )
        try:
            for chunk in chunks:
                last = chunk
                delta, chunk_finish = _answer(chunk)
                finish = chunk_finish or finish
                if delta:
                    parts.append(delta)
                    yield delta
        except _SDK_ERRORS as error:
            translated = _translate(error)
            if parts:
                raise StreamInterrupted(
                    f"Gemini stream broke after {len(parts)} chunks: {translated}",
                    partial_text="".join(parts),
                    usage=_usage(last.usage_metadata) if last is not None else None,
                ) from error
            raise translated from error
        finally:
            if isinstance(chunks, Generator):  # typed as an Iterator, but it is a generator
                chunks.close()  # a caller that stops early must not keep the connection checked out
        text = "".join(parts)
        if last is None or not finish or finish in _BLOCKED or not text:
            problem = (
                _no_answer(last, finish) if last is not None else TransientError("Gemini sent no events")
            )
            if parts:
                raise StreamInterrupted(
                    f"Gemini stream did not finish cleanly: {problem}",
                    partial_text=text,
                    usage=_usage(last.usage_metadata) if last is not None else None,
                ) from problem
            raise problem
        yield Generation(
            text=text,
            model=request.model,
            provider=self.name,
            usage=_usage(last.usage_metadata),  # only the final event carries the output counts
            finish_reason=_FINISH.get(finish, finish.lower()),
            latency_ms=_elapsed_ms(started),
        )


def _contents(request: GenerationRequest) -> list[types.Content]:
    return [
        types.Content(
            role="model" if message.role == "assistant" else "user", parts=[types.Part(text=message.text)]
        )
        for message in request.messages
    ]


def _config(request: GenerationRequest) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        system_instruction=request.system or None,
        max_output_tokens=request.max_output_tokens,
        temperature=request.temperature,
        thinking_config=thinking_config(request.model, request.thinking_budget),
        http_options=types.HttpOptions(timeout=max(1, round(request.timeout_seconds * 1000))),
        # No tools are sent; off also spares a log line per request.
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )


def _answer(response: types.GenerateContentResponse) -> tuple[str, str]:
    """The visible text of candidate 0 (thought summaries skipped) and its finish reason."""
    if not response.candidates:
        return "", ""
    candidate = response.candidates[0]
    content_parts = candidate.content.parts if candidate.content is not None else None
    text = "".join(part.text for part in content_parts or [] if part.text and not part.thought)
    finish = candidate.finish_reason
    return text, (finish.value if isinstance(finish, types.FinishReason) else str(finish or ""))


def _no_answer(response: types.GenerateContentResponse, finish: str) -> ProviderError:
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = getattr(feedback.block_reason, "value", feedback.block_reason)
        return ContentBlocked(f"Gemini blocked the prompt ({reason})")
    if finish in _BLOCKED:
        return ContentBlocked(f"Gemini withheld the answer (finish reason {finish})")
    if not response.candidates:
        return PermanentError("Gemini returned no candidates")
    if finish == "MAX_TOKENS":
        # Thinking counts against max_output_tokens: a small limit can leave nothing to show.
        return PermanentError("Gemini used up max_output_tokens before writing any text")
    if not finish:
        return TransientError("Gemini's stream ended without a finish reason")
    return PermanentError(f"Gemini returned no text (finish reason {finish})")


def _usage(metadata: types.GenerateContentResponseUsageMetadata | None) -> Usage:
    if metadata is None:
        return Usage(input_tokens=0, output_tokens=0)
    return Usage(
        input_tokens=metadata.prompt_token_count or 0,  # includes cached tokens
        output_tokens=metadata.candidates_token_count or 0,
        cached_tokens=metadata.cached_content_token_count or 0,
        thinking_tokens=metadata.thoughts_token_count or 0,
    )


def _translate(error: Exception) -> ProviderError:
    # A 200 whose body is not JSON: the streaming path wraps it, the plain one raises the
    # JSONDecodeError itself. A truncated or garbled body is worth another try.
    if isinstance(error, errors.UnknownApiResponseError | json.JSONDecodeError):
        return TransientError(f"Gemini returned an unreadable response: {error}")
    if isinstance(error, errors.APIError):
        return _translate_api_error(error)
    if isinstance(error, TRANSPORT_ERRORS):
        return TransientError(f"Gemini could not be reached or timed out: {type(error).__name__}: {error}")
    # What is left is the SDK's client-side request validation (a ValueError).
    return PermanentError(f"Gemini rejected the request locally: {error}")


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
