"""Chat answers from AWS Bedrock through boto3's Converse and ConverseStream.

The only chatbot module that imports boto3. One client per process and (region,
endpoint, timeouts): clients are thread-safe once built, building them is not.
botocore's timeouts live on the client, so request timeouts are rounded up to
whole seconds to keep the number of cached clients small. Its retries are off
(legacy mode spends ~8 s on a throttle); the fallback chain decides what to retry.
`thinking_budget` is ignored: Converse models answer without extended thinking
unless asked through model-specific fields, which we never send.
"""

import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import botocore.session
from botocore.eventstream import ParserError as EventStreamParserError
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from chatbot.llm.base import (
    FINISH_MAX_TOKENS,
    FINISH_STOP,
    ContentBlocked,
    Generation,
    GenerationRequest,
    Message,
    PermanentError,
    ProviderError,
    StreamInterrupted,
    TransientError,
    Usage,
)
from knowledge.embedding.bedrock import client_for, translate_client_error
from knowledge.embedding.bedrock import reset_clients as reset_embedding_clients

MAX_CONNECT_TIMEOUT_SECONDS = 5.0

_STOP = {"end_turn": FINISH_STOP, "stop_sequence": FINISH_STOP, "max_tokens": FINISH_MAX_TOKENS}
_BLOCKED = {"guardrail_intervened", "content_filtered"}

# A stream cut by the network surfaces from urllib3 (botocore does not wrap event streams).
_NETWORK_ERRORS = (BotoConnectionError, HTTPClientError, IncompleteReadError, Urllib3HTTPError, OSError)


def _client(*, timeout_seconds: float) -> Any:
    read_timeout = float(max(1, math.ceil(timeout_seconds)))  # for streams: the longest wait between chunks
    return client_for(
        region=settings.AWS_REGION,
        endpoint_url=settings.BEDROCK_ENDPOINT_URL or None,
        connect_timeout=min(MAX_CONNECT_TIMEOUT_SECONDS, read_timeout),
        read_timeout=read_timeout,
    )


def reset_clients() -> None:
    """Close and forget every cached client (tests, or after settings or credentials change)."""
    reset_embedding_clients()


def is_configured() -> bool:
    """Whether Bedrock can be called: an endpoint is configured or credentials are at hand.

    Credentials count when botocore finds them without the EC2 instance metadata
    service (environment, shared files, SSO, container or web-identity roles):
    probing IMDS stalls a laptop for seconds. On EC2 with only an instance role,
    set BEDROCK_ENDPOINT_URL (https://bedrock-runtime.<region>.amazonaws.com) to opt in.
    """
    if settings.BEDROCK_ENDPOINT_URL or os.environ.get("AWS_BEARER_TOKEN_BEDROCK"):
        return True
    # Resolving credentials takes ~35 ms (a botocore session, files read); the answer
    # pipeline asks on every message, so the verdict is kept per environment for a while.
    key = tuple(os.environ.get(name, "") for name in _CREDENTIAL_ENV)
    now = time.monotonic()
    cached = _credentials_found.get(key)
    if cached is not None and now - cached[0] < CREDENTIALS_CHECK_SECONDS:
        return cached[1]
    found = _credentials_at_hand()
    _credentials_found[key] = (now, found)
    return found


CREDENTIALS_CHECK_SECONDS = 60.0
_CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)
_credentials_found: dict[tuple[str, ...], tuple[float, bool]] = {}


def _credentials_at_hand() -> bool:
    session = botocore.session.Session()
    resolver = session.get_component("credential_provider")
    resolver.remove("iam-role")  # the instance metadata provider
    try:
        return resolver.load_credentials() is not None
    except BotoCoreError:  # a broken profile: not usable
        return False


class BedrockProvider:
    name = "bedrock"

    def generate(self, request: GenerationRequest) -> Generation:
        client = _client(timeout_seconds=request.timeout_seconds)
        started = time.monotonic()
        try:
            response = client.converse(**_arguments(request))
        except (ClientError, *_NETWORK_ERRORS, BotoCoreError) as error:
            raise _translate(error) from error
        stop_reason = str(response.get("stopReason", ""))
        if not stop_reason:
            # botocore parses a garbled or truncated body into an empty response, it does not raise.
            raise TransientError("Bedrock returned an unreadable response (no stopReason)")
        content = response.get("output", {}).get("message", {}).get("content", [])
        text = "".join(block["text"] for block in content if isinstance(block.get("text"), str))
        if stop_reason in _BLOCKED:
            raise ContentBlocked(f"Bedrock withheld the answer (stop reason {stop_reason})")
        if not text:
            raise PermanentError(f"Bedrock returned no text (stop reason {stop_reason})")
        return Generation(
            text=text,
            model=request.model,
            provider=self.name,
            usage=_usage(response.get("usage")),
            finish_reason=_STOP.get(stop_reason, stop_reason),
            latency_ms=_elapsed_ms(started),
        )

    def stream(self, request: GenerationRequest) -> Iterator[str | Generation]:
        client = _client(timeout_seconds=request.timeout_seconds)
        started = time.monotonic()
        parts: list[str] = []
        stop_reason = ""
        usage: Usage | None = None
        events = None
        try:
            events = client.converse_stream(**_arguments(request))["stream"]
            for event in events:
                if "contentBlockDelta" in event:
                    delta = event["contentBlockDelta"].get("delta", {}).get("text")
                    if delta:
                        parts.append(delta)
                        yield delta
                elif "messageStop" in event:
                    stop_reason = str(event["messageStop"].get("stopReason", ""))
                elif "metadata" in event:
                    usage = _usage(event["metadata"].get("usage"))
        except (ClientError, *_NETWORK_ERRORS, BotoCoreError, EventStreamParserError) as error:
            translated = _translate(error)
            if parts:
                raise StreamInterrupted(
                    f"Bedrock stream broke after {len(parts)} chunks: {translated}",
                    partial_text="".join(parts),
                ) from error
            raise translated from error
        finally:
            if events is not None:
                events.close()  # a caller that stops early must not keep the connection checked out
        text = "".join(parts)
        problem: ProviderError
        if stop_reason in _BLOCKED:
            problem = ContentBlocked(f"Bedrock withheld the answer (stop reason {stop_reason})")
        elif usage is None or not stop_reason:
            # A stream cut between frames just ends; without messageStop and metadata
            # the answer may be incomplete and its usage is unknown.
            problem = TransientError("Bedrock's stream ended before messageStop and metadata")
        elif not text:
            problem = PermanentError(f"Bedrock returned no text (stop reason {stop_reason})")
        else:
            yield Generation(
                text=text,
                model=request.model,
                provider=self.name,
                usage=usage,
                finish_reason=_STOP.get(stop_reason, stop_reason),
                latency_ms=_elapsed_ms(started),
            )
            return
        if parts:
            raise StreamInterrupted(
                f"Bedrock stream did not finish cleanly: {problem}", partial_text=text, usage=usage
            ) from problem
        raise problem


def _arguments(request: GenerationRequest) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "modelId": request.model,
        "messages": _turns(request.messages),
        "inferenceConfig": {"maxTokens": request.max_output_tokens, "temperature": request.temperature},
    }
    if request.system:
        arguments["system"] = [{"text": request.system}]
    return arguments


def _turns(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Converse messages: starting with the user, roles alternating, no blank text.

    Bedrock rejects anything else with a ValidationException, and a real history can
    hold two user messages in a row (a question sent while staff held the chat) or
    start with the bot's greeting. Consecutive turns of one role become one message.
    """
    turns: list[dict[str, Any]] = []
    for message in messages:
        if not message.text.strip() or (not turns and message.role != "user"):
            continue
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"].append({"text": message.text})
        else:
            turns.append({"role": message.role, "content": [{"text": message.text}]})
    return turns


def _usage(usage: dict[str, Any] | None) -> Usage:
    usage = usage or {}
    cache_read = int(usage.get("cacheReadInputTokens") or 0)
    # Bedrock counts cache reads and writes apart from inputTokens; ours include them.
    cache_write = int(usage.get("cacheWriteInputTokens") or 0)
    return Usage(
        input_tokens=int(usage.get("inputTokens") or 0) + cache_read + cache_write,
        output_tokens=int(usage.get("outputTokens") or 0),
        cached_tokens=cache_read,
    )


def _translate(error: Exception) -> ProviderError:
    if isinstance(error, ClientError):  # includes EventStreamError, raised mid-stream
        return translate_client_error(error)
    if isinstance(error, EventStreamParserError):  # a frame with a bad length or checksum
        return TransientError(f"Bedrock sent an unreadable event stream: {type(error).__name__}: {error}")
    if isinstance(error, _NETWORK_ERRORS):
        return TransientError(f"Bedrock could not be reached or timed out: {type(error).__name__}: {error}")
    # Other BotoCoreErrors: no credentials, bad parameters: configuration, not the network.
    return PermanentError(f"Bedrock request could not be made: {type(error).__name__}: {error}")


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
