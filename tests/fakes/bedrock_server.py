"""A loopback fake of the Bedrock runtime API (bedrock-runtime.<region>.amazonaws.com).

Speaks what boto3's `bedrock-runtime` client sends and parses (docs:
/work/shared/specs/llm-protocols.md §5): `POST /model/{url-encoded modelId}/{operation}`
signed with SigV4 (the signature is not verified, the access key id is), and errors
as an HTTP status, an `x-amzn-ErrorType` header and `{"message": ...}`. Implemented:
InvokeModel for Amazon Titan Text Embeddings V2, Converse and ConverseStream (binary
AWS event-stream frames, with in-stream exception events) for the Nova and Claude
chat models. To add an operation (count-tokens), write a handler taking
`(self, call)` and add it to `BedrockHandler.operations`; a model for InvokeModel
goes in `BedrockHandler.models`. A handler returns (body, headers) for a 200, raises
BedrockApiError, or writes the response itself (event-stream frames) and returns None.

Chat answers come from the same scripted replies and default answer as the Gemini
fake (tests/fakes/gemini_server.py): `script_reply`, `block_next`, `break_stream`.
"""

import binascii
import json
import re
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast
from urllib.parse import unquote

from tests.fakes import FakeHandler, FakeServer, RecordedRequest, bag_of_words_vector, count_tokens
from tests.fakes.gemini_server import (
    ReplyQueue,
    ScriptedReply,
    default_answer,
    split_pieces,
    truncate_to_tokens,
)

ROUTE = re.compile(r"^/model/(?P<model>[^/]+)/(?P<operation>[\w-]+)$")
CREDENTIAL = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/"
)

TITAN_V2 = "amazon.titan-embed-text-v2:0"
TITAN_V2_KEYS = {"inputText", "dimensions", "normalize", "embeddingTypes"}
TITAN_V2_DIMENSIONS = (256, 512, 1024)
TITAN_V2_MAX_TOKENS = 8192

# Converse models: on-demand base ids, and those only invocable through an inference
# profile ("us.", "eu.", "apac.", "global." prefix or a profile ARN), like the real service.
CHAT_MODELS = {
    "amazon.nova-micro-v1:0",
    "amazon.nova-lite-v1:0",
    "amazon.nova-pro-v1:0",
    "anthropic.claude-3-haiku-20240307-v1:0",
}
PROFILE_ONLY_CHAT_MODELS = {"amazon.nova-2-lite-v1:0", "anthropic.claude-haiku-4-5-20251001-v1:0"}
PROFILE_PREFIXES = ("us.", "eu.", "apac.", "global.")
STREAM_EXCEPTIONS = {
    "internalServerException",
    "modelStreamErrorException",
    "validationException",
    "throttlingException",
    "serviceUnavailableException",
}

ERROR_CODES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
DEFAULT_MESSAGES = {
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "InternalServerException": "The server encountered an internal error.",
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request again.",
}


# A 200's JSON body and extra headers, or None when the handler wrote the response itself.
Reply = tuple[dict[str, Any], dict[str, str]] | None


class BedrockApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def error_response(status: int, code: str, message: str) -> tuple[bytes, dict[str, str]]:
    headers = {
        "Content-Type": "application/json",
        # Real responses carry a namespace after the colon; botocore strips it.
        "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        "x-amzn-RequestId": str(uuid.uuid4()),
    }
    return json.dumps({"message": message}).encode(), headers


def _malformed(detail: str) -> BedrockApiError:
    return BedrockApiError(
        400,
        "ValidationException",
        f"Malformed input request: {detail}, please reformat your input and try again.",
    )


@dataclass(frozen=True)
class BedrockCall:
    model: str  # percent-decoded, e.g. "amazon.titan-embed-text-v2:0"
    operation: str  # invoke | converse | converse-stream | count-tokens | ...
    request: RecordedRequest

    @property
    def body(self) -> Any:
        return self.request.body


class BedrockHandler(FakeHandler):
    @property
    def fake(self) -> "BedrockServer":
        return cast("BedrockServer", self.server.fake)

    def route(self, request: RecordedRequest) -> None:
        try:
            reply = self._dispatch(request)
        except BedrockApiError as error:
            body, headers = error_response(error.status, error.code, str(error))
            self.send(error.status, body, headers)
            return
        if reply is not None:  # None: the operation wrote its own response (an event stream)
            payload, headers = reply
            self.send_json(200, payload, {"x-amzn-RequestId": str(uuid.uuid4()), **headers})

    def _dispatch(self, request: RecordedRequest) -> Reply:
        match = ROUTE.match(request.path)
        if request.method != "POST" or not match:
            raise BedrockApiError(404, "UnknownOperationException", f"No operation at {request.path}")
        credential = CREDENTIAL.match(request.headers.get("authorization", ""))
        if not credential:
            raise BedrockApiError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        if self.fake.access_key_id is not None and credential["key"] != self.fake.access_key_id:
            raise BedrockApiError(
                403, "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        call = BedrockCall(unquote(match["model"]), match["operation"], request)
        handler = self.operations.get(call.operation)
        if handler is None:
            raise BedrockApiError(404, "UnknownOperationException", f"Unknown operation {call.operation}")
        return handler(self, call)

    def invoke(self, call: BedrockCall) -> Reply:
        model = self.models.get(call.model)
        if model is None:
            raise BedrockApiError(400, "ValidationException", "The provided model identifier is invalid.")
        if not isinstance(call.body, dict):
            raise BedrockApiError(
                400,
                "ValidationException",
                "Malformed input request, please reformat your input and try again.",
            )
        return model(self, call.body)

    def titan_v2(self, body: dict[str, Any]) -> Reply:
        extraneous = sorted(set(body) - TITAN_V2_KEYS)
        if extraneous:
            raise _malformed(f"extraneous key [{extraneous[0]}] is not permitted")
        text = body.get("inputText")
        if not isinstance(text, str):
            raise _malformed("#: required key [inputText] not found")
        if not text:
            raise _malformed("#/inputText: expected minLength: 1, actual: 0")
        dimensions = body.get("dimensions", 1024)
        if dimensions not in TITAN_V2_DIMENSIONS:
            raise _malformed(f"#/dimensions: {dimensions} is not a valid enum value")
        normalize = body.get("normalize", True)
        if not isinstance(normalize, bool):
            raise _malformed(f"#/normalize: expected type: Boolean, found: {type(normalize).__name__}")
        embedding_types = body.get("embeddingTypes", ["float"])
        if (
            not isinstance(embedding_types, list)
            or not embedding_types
            or not set(embedding_types) <= {"float", "binary"}
        ):
            raise _malformed("#/embeddingTypes: expected a non-empty subset of [float, binary]")
        tokens = count_tokens(text)
        if tokens > TITAN_V2_MAX_TOKENS:
            raise BedrockApiError(
                400,
                "ValidationException",
                f"400 Bad Request: Too many input tokens. Max input tokens: {TITAN_V2_MAX_TOKENS}, "
                f"request input token count: {tokens}",
            )
        vector = bag_of_words_vector(text, dimensions)
        # Un-normalised output is not unit length, so a client relying on it is caught.
        values = (vector if normalize else vector * 3.7).tolist()
        by_type: dict[str, list[Any]] = {}
        if "float" in embedding_types:
            by_type["float"] = values
        if "binary" in embedding_types:
            by_type["binary"] = [1 if value > 0 else 0 for value in values]
        payload = {"embedding": values, "inputTextTokenCount": tokens, "embeddingsByType": by_type}
        headers = {"X-Amzn-Bedrock-Input-Token-Count": str(tokens), "X-Amzn-Bedrock-Invocation-Latency": "12"}
        return payload, headers

    def converse(self, call: BedrockCall) -> Reply:
        turn = self._chat_turn(call)
        payload = {
            "output": {"message": {"role": "assistant", "content": [{"text": turn.text}]}},
            "stopReason": turn.stop_reason,
            "usage": turn.usage(),
            "metrics": {"latencyMs": 12},
        }
        return payload, {}

    def converse_stream(self, call: BedrockCall) -> None:
        turn = self._chat_turn(call)
        reply = turn.reply
        wanted = max(reply.pieces or 3, (reply.break_after or 0) + 1)
        deltas = [
            es_event("contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": 0})
            for piece in split_pieces(turn.text, wanted)
        ]
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self._write_chunk(es_event("messageStart", {"role": "assistant"}))
        for index, frame in enumerate(deltas):
            if reply.break_after is not None and index == reply.break_after:
                self._break_stream(reply, frame)
                return
            if index and self.fake.event_delay:
                time.sleep(self.fake.event_delay)
            self._write_chunk(frame)
        self._write_chunk(es_event("contentBlockStop", {"contentBlockIndex": 0}))
        self._write_chunk(es_event("messageStop", {"stopReason": turn.stop_reason}))
        self._write_chunk(es_event("metadata", {"usage": turn.usage(), "metrics": {"latencyMs": 12}}))
        self._write_chunk(b"")

    def _break_stream(self, reply: ScriptedReply, next_frame: bytes) -> None:
        if reply.break_with == "cut":
            # Half a frame and no terminating chunk: the connection closes mid-body.
            self._write_chunk(next_frame[: len(next_frame) // 2])
            self.close_connection = True
            return
        if reply.break_with == "malformed":
            corrupted = next_frame[:-4] + bytes(4)  # a wrong message CRC
            self._write_chunk(corrupted)
        else:
            self._write_chunk(
                es_exception(reply.error_code, STREAM_EXCEPTION_MESSAGES.get(reply.error_code, ""))
            )
        self._write_chunk(b"")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _chat_turn(self, call: BedrockCall) -> "ConverseTurn":
        _require_chat_model(call.model)
        body = call.body
        if not isinstance(body, dict):
            raise BedrockApiError(400, "ValidationException", "Malformed input request, please reformat it.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BedrockApiError(
                400, "ValidationException", "A conversation must start with a user message."
            )
        texts: list[str] = []
        question = ""
        for index, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            expected = "user" if index % 2 == 0 else "assistant"
            if role != expected:
                raise BedrockApiError(
                    400,
                    "ValidationException",
                    "A conversation must alternate between user and assistant roles. Make sure the "
                    "conversation alternates between user and assistant roles and try again.",
                )
            content = message.get("content")
            if not isinstance(content, list) or not content:
                raise BedrockApiError(
                    400,
                    "ValidationException",
                    f"The content field in the Message object at messages.{index} is empty.",
                )
            for block_index, block in enumerate(content):
                text = block.get("text") if isinstance(block, dict) else None
                if not isinstance(text, str) or not text.strip():
                    raise BedrockApiError(
                        400,
                        "ValidationException",
                        f"The text field in the ContentBlock object at messages.{index}.content."
                        f"{block_index} is blank. Add text to the text field, and try again.",
                    )
                texts.append(text)
                if role == "user":
                    question = text
        system = body.get("system") or []
        system_texts = [block.get("text", "") for block in system if isinstance(block, dict)]
        config = body.get("inferenceConfig") or {}
        max_tokens = config.get("maxTokens", 4096)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise BedrockApiError(
                400, "ValidationException", "The value at inferenceConfig.maxTokens is invalid."
            )
        temperature = config.get("temperature", 0.7)
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
            raise BedrockApiError(
                400,
                "ValidationException",
                "The value at inferenceConfig.temperature must be between 0 and 1.",
            )

        reply = self.fake.replies.pop() or ScriptedReply()
        if reply.block_reason is not None:
            # A guardrail or content filter answers with its canned message, not the model's.
            text, stop_reason = "Sorry, the model cannot answer this question.", reply.block_reason
        else:
            text = reply.text if reply.text is not None else default_answer([*system_texts, *texts], question)
            stop_reason = reply.finish_reason or "end_turn"
        if count_tokens(text) > max_tokens:
            text, stop_reason = truncate_to_tokens(text, max_tokens), "max_tokens"
        prompt_tokens = reply.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = sum(count_tokens(part) for part in [*system_texts, *texts])
        return ConverseTurn(
            text=text,
            stop_reason=stop_reason,
            prompt_tokens=prompt_tokens,
            output_tokens=reply.output_tokens if reply.output_tokens is not None else count_tokens(text),
            cached_tokens=reply.cached_tokens,
            reply=reply,
        )

    # Operation (the last path segment) -> handler.
    operations: ClassVar[dict[str, Callable[["BedrockHandler", BedrockCall], Reply]]] = {
        "invoke": invoke,
        "converse": converse,
        "converse-stream": converse_stream,
    }
    # InvokeModel model id -> handler of its JSON body.
    models: ClassVar[dict[str, Callable[["BedrockHandler", dict[str, Any]], Reply]]] = {
        TITAN_V2: titan_v2,
    }


class BedrockServer(FakeServer):
    handler_class = BedrockHandler

    def __init__(self, *, access_key_id: str | None = "testing") -> None:
        super().__init__()
        self.access_key_id = access_key_id  # None accepts any signed request
        self.event_delay: float = 0.0  # seconds between two stream deltas (read timeouts mid-stream)
        self.replies = ReplyQueue()

    def reset(self) -> None:
        super().reset()
        self.replies.clear()
        self.event_delay = 0.0

    def script_reply(
        self,
        text: str,
        *,
        stop_reason: str = "end_turn",
        pieces: int | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_tokens: int = 0,
    ) -> None:
        """Answer the next converse/converse-stream request with `text` (streamed in `pieces` deltas).

        `input_tokens` is Bedrock's inputTokens, which excludes `cache_read_tokens`.
        """
        self.replies.push(
            ScriptedReply(
                text=text,
                finish_reason=stop_reason,
                pieces=pieces,
                prompt_tokens=input_tokens,
                output_tokens=output_tokens,
                cached_tokens=cache_read_tokens,
            )
        )

    def block_next(self, stop_reason: str = "guardrail_intervened") -> None:
        """The next answer is a guardrail's canned refusal with this stop reason."""
        self.replies.push(ScriptedReply(block_reason=stop_reason))

    def break_stream(
        self,
        after: int = 1,
        *,
        how: Literal["error", "cut", "malformed"] = "error",
        code: str = "modelStreamErrorException",
        text: str | None = None,
    ) -> None:
        """Break the next stream after `after` text deltas: an exception event of type `code`
        (lowerCamel, as the service sends it), a connection cut mid-frame, or a frame with a bad CRC."""
        if code not in STREAM_EXCEPTIONS:
            raise ValueError(
                f"ConverseStream has no exception {code!r}; use one of {sorted(STREAM_EXCEPTIONS)}"
            )
        self.replies.push(ScriptedReply(text=text, break_after=after, break_with=how, error_code=code))

    def malformed_next(self, times: int = 1) -> None:
        """Answer the next requests with a 200 whose body is not JSON."""
        self.respond_next(200, b'{"output": {', headers={"Content-Type": "application/json"}, times=times)

    def chat_requests(self) -> list[BedrockCall]:
        """The Converse and ConverseStream requests received, in order, with decoded model ids."""
        return [
            BedrockCall(unquote(match["model"]), match["operation"], request)
            for request in self.requests
            if (match := ROUTE.match(request.path)) and match["operation"] in ("converse", "converse-stream")
        ]

    def fail_next(
        self, status: int, times: int = 1, *, code: str | None = None, message: str | None = None
    ) -> None:
        """Answer the next `times` requests with a Bedrock error; `code` defaults from the status."""
        code = code or ERROR_CODES.get(status, "InternalServerException")
        body, headers = error_response(status, code, message or DEFAULT_MESSAGES.get(code, "Request failed."))
        self.respond_next(status, body, headers=headers, times=times)

    def invocations(self, model: str = TITAN_V2) -> list[RecordedRequest]:
        """The InvokeModel requests received for `model`, in order."""
        return [
            request
            for request in self.requests
            if (match := ROUTE.match(request.path))
            and match["operation"] == "invoke"
            and unquote(match["model"]) == model
        ]


STREAM_EXCEPTION_MESSAGES = {
    "modelStreamErrorException": "The model stream encountered an error. Retry your request.",
    "throttlingException": "Too many requests, please wait before trying again.",
    "internalServerException": "The server encountered an internal error.",
    "serviceUnavailableException": "Bedrock is unable to process your request.",
    "validationException": "The input is invalid.",
}


def _require_chat_model(model: str) -> None:
    profile = model.rsplit("inference-profile/", 1)[-1] if model.startswith("arn:") else model
    base = profile
    for prefix in PROFILE_PREFIXES:
        if profile.startswith(prefix):
            base = profile[len(prefix) :]
            break
    if base in PROFILE_ONLY_CHAT_MODELS and base == profile:
        raise BedrockApiError(
            400,
            "ValidationException",
            f"Invocation of model ID {model} with on-demand throughput isn\u2019t supported. Retry your "
            "request with the ID or ARN of an inference profile that contains this model.",
        )
    if base == TITAN_V2:
        raise BedrockApiError(
            400,
            "ValidationException",
            "This action doesn't support the model that you provided. "
            "Try again with a supported text or chat model.",
        )
    if base not in CHAT_MODELS | PROFILE_ONLY_CHAT_MODELS:
        raise BedrockApiError(400, "ValidationException", "The provided model identifier is invalid.")


@dataclass(frozen=True)
class ConverseTurn:
    text: str
    stop_reason: str
    prompt_tokens: int  # inputTokens: without the cache reads
    output_tokens: int
    cached_tokens: int  # cacheReadInputTokens
    reply: ScriptedReply

    def usage(self) -> dict[str, int]:
        usage = {
            "inputTokens": self.prompt_tokens,
            "outputTokens": self.output_tokens,
            "totalTokens": self.prompt_tokens + self.output_tokens + self.cached_tokens,
        }
        if self.cached_tokens:
            usage["cacheReadInputTokens"] = self.cached_tokens
        return usage


# AWS event-stream framing (spec §5.5, verified against botocore's parser).


def _header(name: str, value: str) -> bytes:
    encoded_name, encoded_value = name.encode(), value.encode()
    # Header value type 7: a string with a 2-byte length.
    return (
        struct.pack(">B", len(encoded_name))
        + encoded_name
        + b"\x07"
        + struct.pack(">H", len(encoded_value))
        + encoded_value
    )


def es_message(headers: dict[str, str], payload: bytes) -> bytes:
    encoded_headers = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded_headers))
    message = prelude + struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF) + encoded_headers + payload
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def es_event(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return es_message(headers, json.dumps(payload).encode())


def es_exception(exception_type: str, message: str) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return es_message(headers, json.dumps({"message": message}).encode())
