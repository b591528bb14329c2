"""Amazon Titan Text Embeddings V2 on AWS Bedrock through boto3.

The only module that imports boto3 for Bedrock. One client per process and
(region, endpoint, timeouts): boto3 clients are thread-safe once built, building
them is not. botocore's own retries are off (its legacy mode spends ~8 s on a 429);
callers retry TransientError with backoff.
"""

import json
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings

from knowledge.embedding.base import EmbeddingBatch, unit_vector
from knowledge.embedding.errors import PermanentError, ProviderError, RateLimited, TransientError

TITAN_V2 = "amazon.titan-embed-text-v2:0"
TITAN_V2_DIMENSIONS = (256, 512, 1024)
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 30.0

# Codes as HTTP errors carry them (PascalCase); in-stream exceptions use lowerCamel
# ("throttlingException") and are normalised before the lookup.
_RATE_LIMITED_CODES = {"ThrottlingException", "ServiceQuotaExceededException", "TooManyRequestsException"}
_TRANSIENT_CODES = {
    "InternalServerException",
    "ServiceUnavailableException",
    "ModelStreamErrorException",
    "ModelTimeoutException",
    "ModelNotReadyException",  # a 429, but the model is loading rather than we are too fast
    "InternalFailure",
    "ServiceUnavailable",
}

_clients: dict[tuple[str, str | None, float, float], Any] = {}
_clients_lock = threading.Lock()


def client_for(*, region: str, endpoint_url: str | None, connect_timeout: float, read_timeout: float) -> Any:
    """One bedrock-runtime client per settings combination per process, shared by embeddings and chat."""
    key = (region, endpoint_url, connect_timeout, read_timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            config = Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"total_max_attempts": 1},
            )
            try:
                # Its own session: creating clients from boto3's shared default session is not thread-safe.
                client = boto3.session.Session().client(
                    "bedrock-runtime", region_name=region, endpoint_url=endpoint_url or None, config=config
                )
            except BotoCoreError as error:
                raise PermanentError(f"Bedrock client configuration is invalid: {error}") from error
            _clients[key] = client
    return client


def reset_clients() -> None:
    """Close and forget every cached client (tests, or after settings or credentials change)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


@dataclass
class TitanEmbedder:
    """Titan Text Embeddings V2: one text per InvokeModel call (the model has no batch input)."""

    key: str
    model: str = TITAN_V2
    dimensions: int = 512
    max_batch: int = 32  # only how much callers hand over at once; requests are still one per text
    connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS
    read_timeout_seconds: float = READ_TIMEOUT_SECONDS
    provider: str = field(default="bedrock", init=False)

    def __post_init__(self) -> None:
        if self.dimensions not in TITAN_V2_DIMENSIONS:
            raise ValueError(f"Titan V2 supports {TITAN_V2_DIMENSIONS} dimensions, not {self.dimensions}")

    def embed_documents(self, texts: list[str]) -> EmbeddingBatch:
        return self._embed(texts)

    def embed_query(self, text: str) -> EmbeddingBatch:
        # Titan V2 has no task type: queries and passages are embedded the same way.
        return self._embed([text])

    def _embed(self, texts: list[str]) -> EmbeddingBatch:
        if not texts:
            return EmbeddingBatch(vectors=[], input_tokens=0, model=self.model)
        client = client_for(
            region=settings.AWS_REGION,
            endpoint_url=settings.BEDROCK_ENDPOINT_URL,
            connect_timeout=self.connect_timeout_seconds,
            read_timeout=self.read_timeout_seconds,
        )
        vectors: list[list[float]] = []
        input_tokens = 0
        for text in texts:
            payload, headers = _invoke(
                client,
                model=self.model,
                body={"inputText": text, "dimensions": self.dimensions, "normalize": True},
            )
            embedding = payload.get("embedding")
            if not isinstance(embedding, list):
                raise PermanentError("Bedrock returned no embedding")
            vectors.append(unit_vector(embedding, dimensions=self.dimensions))
            input_tokens += _input_tokens(payload, headers, text)
        return EmbeddingBatch(vectors=vectors, input_tokens=input_tokens, model=self.model)


def _invoke(client: Any, *, model: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        response = client.invoke_model(
            modelId=model, body=json.dumps(body), contentType="application/json", accept="application/json"
        )
        raw = response["body"].read()
    except ClientError as error:
        raise translate_client_error(error) from error
    except (BotoConnectionError, HTTPClientError, IncompleteReadError) as error:
        unreachable = f"Bedrock could not be reached or timed out: {type(error).__name__}: {error}"
        raise TransientError(unreachable) from error
    except BotoCoreError as error:  # no credentials, bad parameters: configuration, not the network
        raise PermanentError(f"Bedrock request could not be made: {error}") from error
    try:
        payload = json.loads(raw)
    except ValueError as error:
        raise TransientError("Bedrock returned an unreadable response") from error
    if not isinstance(payload, dict):
        raise PermanentError("Bedrock returned an unexpected response")
    return payload, response.get("ResponseMetadata", {}).get("HTTPHeaders", {})


def _input_tokens(payload: dict[str, Any], headers: dict[str, str], text: str) -> int:
    """Provider-reported: the body's inputTextTokenCount, else the token-count header.

    Only if both are missing (not expected) is it estimated at ~4 characters a token.
    """
    for value in (payload.get("inputTextTokenCount"), headers.get("x-amzn-bedrock-input-token-count")):
        try:
            if value is not None:
                return int(value)
        except (TypeError, ValueError):
            continue
    return max(1, math.ceil(len(text) / 4))


def translate_client_error(error: ClientError) -> ProviderError:
    """A Bedrock error response (HTTP, or an exception inside an event stream) as our error.

    Shared by the embedder and the chat provider (chatbot.llm.bedrock).
    """
    details = error.response.get("Error", {})
    raw_code = str(details.get("Code", ""))
    code = raw_code[:1].upper() + raw_code[1:]
    metadata = error.response.get("ResponseMetadata", {})
    status = int(metadata.get("HTTPStatusCode") or 0)
    described = f"Bedrock {status or 'stream'} {code}: {details.get('Message', '')}"
    if code in _RATE_LIMITED_CODES or (status == 429 and code not in _TRANSIENT_CODES):
        return RateLimited(described, retry_after=_retry_after(metadata.get("HTTPHeaders", {})))
    if code in _TRANSIENT_CODES or status >= 500 or status == 408:
        return TransientError(described)
    # ValidationException, AccessDeniedException, ResourceNotFoundException, ModelErrorException, ...
    return PermanentError(described)


def _retry_after(headers: dict[str, str]) -> float | None:
    try:
        seconds = float(headers["retry-after"])
    except (KeyError, ValueError):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None
