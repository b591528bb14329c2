"""Gemini embeddings (gemini-embedding-001) through google-genai.

The only module that imports google.genai. One client per process and
(key, base URL, timeout): a temporary client closes its HTTP connection pool in
`__del__` while the call is still running, and sharing one keeps connections warm.
The SDK's own retries stay off; callers retry TransientError with backoff.
"""

import importlib.util
import json
import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from google import genai
from google.genai import errors, types

from knowledge.embedding.base import EmbeddingBatch, unit_vector
from knowledge.embedding.errors import PermanentError, ProviderError, RateLimited, TransientError

# v1beta: the surface Google's embeddings reference documents (taskType,
# outputDimensionality); the 3.x SDK would otherwise default to v1.
API_VERSION = "v1beta"
# batchEmbedContents rejects more than 100 requests with 400; the SDK does not split.
MAX_BATCH = 100
DEFAULT_TIMEOUT_SECONDS = 30.0

# The SDK raises its HTTP library's exceptions (httpx2 in 3.x, httpx when chosen
# through GOOGLE_GENAI_HTTP_CLIENT) for timeouts and connection failures.
TRANSPORT_ERRORS: tuple[type[Exception], ...] = tuple(
    importlib.import_module(name).RequestError
    for name in ("httpx2", "httpx")
    if importlib.util.find_spec(name) is not None
)

_clients: dict[tuple[str, str | None, int], genai.Client] = {}
_clients_lock = threading.Lock()


def client_for(*, api_key: str, base_url: str | None, timeout_ms: int) -> genai.Client:
    """One client per (key, endpoint, timeout) per process, shared by embeddings and chat."""
    key = (api_key, base_url, timeout_ms)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            try:
                client = genai.Client(
                    # Explicit, so GOOGLE_GENAI_USE_VERTEXAI in the environment cannot switch the URLs.
                    vertexai=False,
                    api_key=api_key,
                    http_options=types.HttpOptions(
                        base_url=base_url or None,
                        api_version=API_VERSION,
                        timeout=timeout_ms,  # milliseconds, per connect/read/write phase
                        retry_options=None,
                    ),
                )
            except ValueError as error:
                raise PermanentError(f"Gemini client configuration is invalid: {error}") from error
            _clients[key] = client
    return client


def reset_clients() -> None:
    """Close and forget every cached client (tests, or after settings change)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


@dataclass
class GeminiEmbedder:
    key: str
    model: str = "gemini-embedding-001"
    dimensions: int = 768
    max_batch: int = MAX_BATCH
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    provider: str = field(default="gemini", init=False)

    def embed_documents(self, texts: list[str]) -> EmbeddingBatch:
        return self._embed(texts, task_type="RETRIEVAL_DOCUMENT")

    def embed_query(self, text: str) -> EmbeddingBatch:
        return self._embed([text], task_type="RETRIEVAL_QUERY")

    def _embed(self, texts: list[str], *, task_type: str) -> EmbeddingBatch:
        if not texts:
            return EmbeddingBatch(vectors=[], input_tokens=0, model=self.model)
        api_key = settings.GEMINI_API_KEY
        if not api_key:
            raise PermanentError("GEMINI_API_KEY is not set")
        client = client_for(
            api_key=api_key, base_url=settings.GEMINI_BASE_URL, timeout_ms=int(self.timeout_seconds * 1000)
        )
        config = types.EmbedContentConfig(task_type=task_type, output_dimensionality=self.dimensions)
        vectors: list[list[float]] = []
        input_tokens = 0
        step = min(self.max_batch, MAX_BATCH)
        for start in range(0, len(texts), step):
            batch = texts[start : start + step]
            # One Content per text: for multimodal embedding models (gemini-embedding-2)
            # the SDK merges a list of plain strings into a single embedding.
            contents = [types.Content(role="user", parts=[types.Part(text=text)]) for text in batch]
            try:
                response = client.models.embed_content(model=self.model, contents=contents, config=config)
            except (errors.UnknownApiResponseError, json.JSONDecodeError) as error:
                # A truncated or garbled 200 body is worth another try.
                raise TransientError(f"Gemini returned an unreadable response: {error}") from error
            except errors.APIError as error:
                raise translate_error(error) from error
            except TRANSPORT_ERRORS as error:
                unreachable = f"Gemini could not be reached or timed out: {type(error).__name__}: {error}"
                raise TransientError(unreachable) from error
            except ValueError as error:  # the SDK's client-side request validation
                raise PermanentError(f"Gemini rejected the request locally: {error}") from error
            embeddings = response.embeddings or []
            if len(embeddings) != len(batch):
                raise PermanentError(f"Gemini returned {len(embeddings)} embeddings for {len(batch)} texts")
            # Reduced-dimension Gemini vectors are not unit length; only the full 3072 are.
            vectors.extend(unit_vector(item.values or [], dimensions=self.dimensions) for item in embeddings)
            input_tokens += _input_tokens(response, batch)
        return EmbeddingBatch(vectors=vectors, input_tokens=input_tokens, model=self.model)


def _input_tokens(response: types.EmbedContentResponse, batch: list[str]) -> int:
    """Provider-reported tokens when the response has them, else an estimate.

    batchEmbedContents on the Developer API usually returns no usage at all. A
    countTokens call per batch would double the requests for a price of cents, so
    we estimate with Google's published rule of thumb, about 4 characters a token.
    """
    usage = response.usage_metadata
    if usage is not None and usage.prompt_token_count:
        return usage.prompt_token_count
    return sum(max(1, math.ceil(len(text) / 4)) for text in batch)


def translate_error(error: errors.APIError) -> ProviderError:
    described = f"Gemini {error.code} {error.status}: {error.message}"
    if error.code == 429:
        return RateLimited(described, retry_after=_retry_after(error))
    if error.code == 408 or isinstance(error, errors.ServerError):
        return TransientError(described)
    return PermanentError(described)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _retry_after(error: errors.APIError) -> float | None:
    """Seconds to wait, from a Retry-After header or the google.rpc.RetryInfo detail."""
    headers = getattr(error.response, "headers", None)
    if headers is not None:
        try:
            seconds = float(headers.get("retry-after", ""))
        except ValueError:
            pass  # absent, or an HTTP date: fall through to RetryInfo
        else:
            if math.isfinite(seconds):
                return max(0.0, seconds)
    body: Any = error.details
    details = body.get("error") if isinstance(body, dict) else None
    details = details.get("details") if isinstance(details, dict) else None
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None
