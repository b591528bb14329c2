"""A loopback fake of the Gemini Developer API (generativelanguage.googleapis.com).

Speaks the protocol google-genai 3.x uses (docs: /work/shared/specs/llm-protocols.md
§2): `POST /{v1|v1beta|v1alpha}/models/{model}:{method}`, the `x-goog-api-key`
header, `{"error": {"code", "message", "status"}}` error bodies, and only 200
counts as success. Implemented methods: batchEmbedContents (what the SDK uses for
every embed_content call), embedContent, countTokens, generateContent and
streamGenerateContent (`?alt=sse`: one `data: <json>` line and a blank line per
event, nothing else). To add a method, write a handler taking `(self, call)` and
add it to `GeminiHandler.methods`: return the JSON body of a 200, raise
GeminiApiError for an error, or write the response yourself (SSE: `self.send_response`,
chunks to `self.wfile`) and return None. The query string is in `call.request.query`.

Chat answers are deterministic: a scripted reply when one is queued
(`script_reply`, `block_next`, `break_stream`), otherwise the first numbered
source line found in the prompt ("[1] ...") quoted with its marker, or an echo of
the question. Token counts are the fakes' `count_tokens` of the prompt and the
answer; thinking models report thoughts unless thinking is turned off.
`chat_latency` (seconds) delays every chat answer before its first byte, like a
model's time to first token, without slowing embeddings (`latency`, from
FakeServer, delays every request). The reply helpers at the end are shared with
the Bedrock fake.
"""

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

from tests.fakes import FakeHandler, FakeServer, RecordedRequest, bag_of_words_vector, count_tokens

ROUTE = re.compile(
    r"^(?P<prefix>.*?)/(?P<version>v1|v1beta|v1alpha)/models/(?P<model>[^/:]+):(?P<method>\w+)$"
)

EMBEDDING_MODELS = {"gemini-embedding-001", "gemini-embedding-2", "gemini-embedding-2-preview"}
# Shut down by Google (spec §0): generateContent answers 404 like the real API.
RETIRED_CHAT_MODELS = {"gemini-1.5-flash", "gemini-1.5-pro", "gemini-2.0-flash", "gemini-2.0-flash-lite"}
CHAT_MODEL = re.compile(r"^gemini-(?P<major>\d+)(?:\.(?P<minor>\d+))?-")
FAKE_THOUGHTS_TOKENS = 24  # what a thinking model "thinks" per answer, unless its budget is smaller
FULL_DIMENSIONS = 3072
MAX_BATCH = 100
TASK_TYPES = {
    "TASK_TYPE_UNSPECIFIED",
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
}
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
DEFAULT_MESSAGES = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}


def error_body(
    code: int,
    message: str | None = None,
    *,
    status: str | None = None,
    details: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code,
        "message": message or DEFAULT_MESSAGES.get(code, "Request failed."),
        "status": status or STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


class GeminiApiError(Exception):
    def __init__(
        self, code: int, message: str, *, status: str | None = None, details: list | None = None
    ) -> None:
        super().__init__(message)
        self.body = error_body(code, message, status=status, details=details)
        self.code = code


@dataclass(frozen=True)
class GeminiCall:
    version: str  # v1 | v1beta | v1alpha
    model: str
    method: str
    request: RecordedRequest

    @property
    def body(self) -> dict[str, Any]:
        return self.request.body


class GeminiHandler(FakeHandler):
    @property
    def fake(self) -> "GeminiServer":
        return cast("GeminiServer", self.server.fake)

    def route(self, request: RecordedRequest) -> None:
        try:
            payload = self._dispatch(request)
        except GeminiApiError as error:
            self.send_json(error.code, error.body)
            return
        if payload is not None:  # None: the method wrote its own response (a stream)
            self.send_json(200, payload)

    def _dispatch(self, request: RecordedRequest) -> dict[str, Any] | None:
        match = ROUTE.match(request.path)
        if request.method != "POST" or not match:
            raise GeminiApiError(404, f"The requested URL {request.path} was not found on this server.")
        api_key = request.headers.get("x-goog-api-key") or request.query.get("key", [""])[0]
        if not api_key:
            raise GeminiApiError(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if api_key != self.fake.api_key:
            raise GeminiApiError(
                400,
                "API key not valid. Please pass a valid API key.",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )
        if not isinstance(request.body, dict):
            raise GeminiApiError(400, "Invalid JSON payload received.")
        call = GeminiCall(match["version"], match["model"], match["method"], request)
        handler = self.methods.get(call.method)
        if handler is None:
            raise GeminiApiError(404, f"Method {call.method} is not implemented by the fake Gemini API.")
        return handler(self, call)

    def batch_embed_contents(self, call: GeminiCall) -> dict[str, Any]:
        self._require_embedding_model(call)
        requests = call.body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise GeminiApiError(
                400, "* BatchEmbedContentsRequest.requests: at least one request is required"
            )
        if len(requests) > MAX_BATCH:
            raise GeminiApiError(
                400, "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
            )
        embeddings = [self._embed(item, f"requests[{index}].") for index, item in enumerate(requests)]
        response: dict[str, Any] = {"embeddings": [{"values": values} for values, _ in embeddings]}
        if self.fake.report_usage:
            tokens = sum(tokens for _, tokens in embeddings)
            response["usageMetadata"] = {"promptTokenCount": tokens, "totalTokenCount": tokens}
        return response

    def embed_content(self, call: GeminiCall) -> dict[str, Any]:
        self._require_embedding_model(call)
        values, _ = self._embed(call.body, "")
        return {"embedding": {"values": values}}

    def count_tokens(self, call: GeminiCall) -> dict[str, Any]:
        contents = call.body.get("contents") or []
        total = sum(count_tokens(_text_of(content)) for content in contents if isinstance(content, dict))
        return {"totalTokens": total}

    def generate_content(self, call: GeminiCall) -> dict[str, Any]:
        turn = self._chat_turn(call)
        if turn.reply.block_reason is not None:
            return turn.blocked_event()
        return turn.event(turn.text, final=True)

    def stream_generate_content(self, call: GeminiCall) -> None:
        if call.request.query != {"alt": ["sse"]}:
            raise GeminiApiError(400, "streamGenerateContent needs exactly the query alt=sse")
        turn = self._chat_turn(call)
        reply = turn.reply
        if reply.block_reason is not None:
            events = [turn.blocked_event()]
        else:
            wanted = max(reply.pieces or 3, (reply.break_after or 0) + 1)
            pieces = split_pieces(turn.text, wanted)
            events = [turn.event(piece, final=index == len(pieces) - 1) for index, piece in enumerate(pieces)]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, event in enumerate(events):
            if reply.break_after is not None and index == reply.break_after:
                self._break_stream(reply)
                return
            if index and self.fake.event_delay:
                time.sleep(self.fake.event_delay)
            self._write_chunk(b"data: " + json.dumps(event).encode() + b"\r\n\r\n")
        self._write_chunk(b"")  # the terminating zero-length chunk

    def _break_stream(self, reply: "ScriptedReply") -> None:
        if reply.break_with == "cut":
            # No terminating chunk: the client sees the connection close mid-body.
            self.close_connection = True
            return
        if reply.break_with == "malformed":
            self._write_chunk(b'data: {"candidates": [{"content": \r\n\r\n')
        else:
            body = error_body(reply.error_status)
            self._write_chunk(b"data: " + json.dumps(body).encode() + b"\r\n\r\n")
        self._write_chunk(b"")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _chat_turn(self, call: GeminiCall) -> "ChatTurn":
        self._require_chat_model(call)
        body = call.body
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise GeminiApiError(400, "* GenerateContentRequest.contents: contents is not specified")
        texts: list[str] = []
        question = ""
        for index, content in enumerate(contents):
            if not isinstance(content, dict) or content.get("role", "user") not in ("user", "model"):
                raise GeminiApiError(
                    400, f"* GenerateContentRequest.contents[{index}].role: must be 'user' or 'model'"
                )
            parts = content.get("parts")
            if not isinstance(parts, list) or not parts:
                raise GeminiApiError(
                    400, f"* GenerateContentRequest.contents[{index}].parts: must not be empty"
                )
            text = _text_of(content)
            texts.append(text)
            if content.get("role", "user") == "user":
                question = text
        system = body.get("systemInstruction")
        system_text = _text_of(system) if isinstance(system, dict) else ""
        config = body.get("generationConfig") or {}
        max_output = config.get("maxOutputTokens", 8192)
        if not isinstance(max_output, int) or max_output < 1:
            raise GeminiApiError(
                400, "* GenerateContentRequest.generation_config.max_output_tokens: must be positive"
            )
        temperature = config.get("temperature", 1.0)
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
            raise GeminiApiError(
                400, "* GenerateContentRequest.generation_config.temperature: must be in [0, 2]"
            )
        thoughts = self._thoughts(call, config.get("thinkingConfig") or {})
        if self.fake.chat_latency:
            time.sleep(self.fake.chat_latency)

        reply = self.fake._next_reply() or ScriptedReply()
        text = reply.text if reply.text is not None else default_answer([system_text, *texts], question)
        if reply.thoughts_tokens is not None:
            thoughts = reply.thoughts_tokens
        finish = reply.finish_reason
        visible = max(0, max_output - thoughts)  # thinking counts against maxOutputTokens
        if count_tokens(text) > visible:
            text, finish = truncate_to_tokens(text, visible), "MAX_TOKENS"
        prompt_tokens = reply.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = count_tokens(system_text) + sum(count_tokens(part) for part in texts)
        output_tokens = reply.output_tokens if reply.output_tokens is not None else count_tokens(text)
        return ChatTurn(
            model=call.model,
            text=text,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            cached_tokens=reply.cached_tokens,
            thoughts_tokens=thoughts,
            reply=reply,
        )

    def _require_chat_model(self, call: GeminiCall) -> None:
        if (
            call.model in RETIRED_CHAT_MODELS
            or call.model in EMBEDDING_MODELS
            or not CHAT_MODEL.match(call.model)
        ):
            raise GeminiApiError(
                404,
                f"models/{call.model} is not found for API version {call.version}, or is not supported "
                f"for {call.method}. Call ListModels to see the list of available models and their "
                "supported methods.",
            )

    def _thoughts(self, call: GeminiCall, thinking: dict[str, Any]) -> int:
        """Thinking tokens the answer "costs"; the SDK sends these keys in snake_case, the API takes both."""
        budget = thinking.get("thinking_budget", thinking.get("thinkingBudget"))
        level = thinking.get("thinking_level", thinking.get("thinkingLevel"))
        match = CHAT_MODEL.match(call.model)
        generation = (int(match["major"]), int(match["minor"] or 0)) if match else (0, 0)
        if budget is not None and level is not None:
            raise GeminiApiError(400, "thinking_budget and thinking_level cannot both be set.")
        if level is not None and generation < (3, 0):
            raise GeminiApiError(400, "Thinking level is not supported for this model.")
        if budget == 0 and "-pro" in call.model:
            raise GeminiApiError(400, "Budget 0 is invalid. This model only works in thinking mode.")
        if budget == 0 or str(level).upper() == "MINIMAL":
            return 0
        if isinstance(budget, int) and budget > 0:
            return min(budget, FAKE_THOUGHTS_TOKENS)
        thinks_by_default = generation >= (2, 5)
        return FAKE_THOUGHTS_TOKENS if thinks_by_default or budget == -1 or level is not None else 0

    # Method name -> handler.
    methods: ClassVar[dict[str, Callable[["GeminiHandler", GeminiCall], dict[str, Any] | None]]] = {
        "batchEmbedContents": batch_embed_contents,
        "embedContent": embed_content,
        "countTokens": count_tokens,
        "generateContent": generate_content,
        "streamGenerateContent": stream_generate_content,
    }

    def _require_embedding_model(self, call: GeminiCall) -> None:
        if call.model not in EMBEDDING_MODELS:
            raise GeminiApiError(
                404,
                f"models/{call.model} is not found for API version {call.version}, or is not supported "
                f"for {call.method}. Call ListModels to see the list of available models and their "
                "supported methods.",
            )

    def _embed(self, item: Any, field_prefix: str) -> tuple[list[float], int]:
        if not isinstance(item, dict) or not isinstance(item.get("content"), dict):
            raise GeminiApiError(400, f"* {field_prefix}content: required field is missing")
        task_type = item.get("taskType", "TASK_TYPE_UNSPECIFIED")
        if task_type not in TASK_TYPES:
            raise GeminiApiError(
                400,
                f"Invalid value at '{field_prefix}task_type' "
                f'(type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType), "{task_type}"',
            )
        dimensions = item.get("outputDimensionality") or FULL_DIMENSIONS
        if not isinstance(dimensions, int) or not 1 <= dimensions <= FULL_DIMENSIONS:
            raise GeminiApiError(
                400, f"* {field_prefix}output_dimensionality: must be between 1 and {FULL_DIMENSIONS}"
            )
        text = _text_of(item["content"])
        # Like the real model: the full 3072 values are unit length, a Matryoshka prefix is not.
        values = bag_of_words_vector(text, FULL_DIMENSIONS)[:dimensions]
        return values.tolist(), count_tokens(text)


def _text_of(content: dict[str, Any]) -> str:
    parts = content.get("parts") or []
    return " ".join(str(part.get("text", "")) for part in parts if isinstance(part, dict))


class GeminiServer(FakeServer):
    handler_class = GeminiHandler

    def __init__(
        self, *, api_key: str = "test-key", report_usage: bool = False, chat_latency: float = 0.0
    ) -> None:
        super().__init__()
        self.api_key = api_key
        # The real batchEmbedContents reports no usage; turn this on to test the other path.
        self.report_usage = report_usage
        self.event_delay: float = 0.0  # seconds between two stream events (read timeouts mid-stream)
        self.chat_latency = chat_latency  # seconds before each chat answer's first byte
        self.replies = ReplyQueue()

    def reset(self) -> None:
        super().reset()
        self.replies.clear()
        self.event_delay = 0.0
        self.chat_latency = 0.0

    def _next_reply(self) -> "ScriptedReply | None":
        return self.replies.pop()

    def script_reply(
        self,
        text: str,
        *,
        finish_reason: str = "STOP",
        pieces: int | None = None,
        prompt_tokens: int | None = None,
        output_tokens: int | None = None,
        cached_tokens: int = 0,
        thoughts_tokens: int | None = None,
    ) -> None:
        """Answer the next generate/stream request with `text` (streamed in `pieces` events).

        Token counts default to the fake's own count; `finish_reason` may be a refusal
        such as "SAFETY" (use text="" for a withheld answer).
        """
        self.replies.push(
            ScriptedReply(
                text=text,
                finish_reason=finish_reason,
                pieces=pieces,
                prompt_tokens=prompt_tokens,
                output_tokens=output_tokens,
                cached_tokens=cached_tokens,
                thoughts_tokens=thoughts_tokens,
            )
        )

    def block_next(self, reason: str = "SAFETY") -> None:
        """Block the next prompt: 200 with no candidates and promptFeedback.blockReason."""
        self.replies.push(ScriptedReply(block_reason=reason))

    def break_stream(
        self,
        after: int = 1,
        *,
        how: Literal["error", "cut", "malformed"] = "error",
        status: int = 503,
        text: str | None = None,
    ) -> None:
        """Break the next stream after `after` text events: an in-stream error event
        (`status`), a connection cut mid-body, or an unparseable event."""
        self.replies.push(ScriptedReply(text=text, break_after=after, break_with=how, error_status=status))

    def malformed_next(self, times: int = 1) -> None:
        """Answer the next requests with a 200 whose body is not JSON."""
        self.respond_next(200, b'{"candidates": [', headers={"Content-Type": "application/json"}, times=times)

    def chat_requests(self) -> list[RecordedRequest]:
        """The generateContent and streamGenerateContent requests received, in order."""
        return [
            request
            for request in self.requests
            if request.path.endswith((":generateContent", ":streamGenerateContent"))
        ]

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        message: str | None = None,
        retry_delay: str | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next `times` requests with a Google API error.

        `retry_delay` (e.g. "7s") adds the google.rpc.RetryInfo detail real 429s carry;
        `body` replaces the whole error body (a dict is sent as JSON, bytes as they are).
        """
        if body is None:
            details = None
            if retry_delay is not None:
                details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}]
            body = error_body(status, message, details=details)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.respond_next(
            status, raw, headers={"Content-Type": "application/json", **(headers or {})}, times=times
        )

    def embed_requests(self) -> list[dict[str, Any]]:
        """Every item of every batchEmbedContents body received, in order."""
        return [
            item
            for request in self.requests
            if request.path.endswith(":batchEmbedContents") and isinstance(request.body, dict)
            for item in request.body.get("requests", [])
        ]


# Chat replies, shared with the Bedrock fake.

_WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")
# A numbered source: "[1] text" on a line, or the product's <source number="1" ...> block.
_SOURCE_LINE = re.compile(
    r"^\s*\[(?P<number>\d+)\]\s*(?P<text>\S.*)$"
    r"|<source number=\"(?P<tag_number>\d+)\"[^>]*>\s*(?P<tag_text>\S.*)$",
    re.MULTILINE,
)
_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)")


@dataclass(frozen=True)
class ScriptedReply:
    text: str | None = None  # None: the default answer derived from the prompt
    finish_reason: str | None = None  # None: each fake's natural "stop" value
    pieces: int | None = None  # stream: text events (default 3)
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    thoughts_tokens: int | None = None
    block_reason: str | None = None  # the prompt is refused outright
    break_after: int | None = None  # stream: text events sent before it breaks
    break_with: Literal["error", "cut", "malformed"] = "error"
    error_status: int = 503  # Gemini: the in-stream error's code
    error_code: str = "modelStreamErrorException"  # Bedrock: the in-stream exception's type


class ReplyQueue:
    """Scripted replies, consumed one per chat request in arrival order."""

    def __init__(self) -> None:
        self._replies: deque[ScriptedReply] = deque()
        self._lock = threading.Lock()

    def push(self, reply: ScriptedReply) -> None:
        with self._lock:
            self._replies.append(reply)

    def pop(self) -> ScriptedReply | None:
        with self._lock:
            return self._replies.popleft() if self._replies else None

    def clear(self) -> None:
        with self._lock:
            self._replies.clear()


def default_answer(prompt_texts: list[str], question: str) -> str:
    """The first sentence of the first numbered source line in the prompt, cited; else an echo."""
    for text in prompt_texts:
        match = _SOURCE_LINE.search(text)
        if match:
            line = (match["text"] or match["tag_text"]).strip()
            number = match["number"] or match["tag_number"]
            sentence = _SENTENCE.match(line)
            return f"{(sentence.group(1) if sentence else line)[:200]} [{number}]"
    return f"You asked: {question}"


def split_pieces(text: str, pieces: int) -> list[str]:
    """`text` cut at word boundaries into at most `pieces` non-empty deltas that join back to it."""
    words = re.findall(r"\S+\s*", text)
    if not words:
        return [text]
    size = -(-len(words) // max(1, pieces))
    return ["".join(words[start : start + size]) for start in range(0, len(words), size)]


def truncate_to_tokens(text: str, limit: int) -> str:
    """The start of `text` holding at most `limit` of the fakes' tokens."""
    if limit <= 0:
        return ""
    matches = list(_WORD_OR_MARK.finditer(text))
    return text if len(matches) <= limit else text[: matches[limit - 1].end()]


@dataclass(frozen=True)
class ChatTurn:
    """One Gemini answer, shaped as a GenerateContentResponse (or its stream events)."""

    model: str
    text: str
    finish_reason: str | None
    prompt_tokens: int
    output_tokens: int
    cached_tokens: int
    thoughts_tokens: int
    reply: ScriptedReply

    def usage(self, *, final: bool) -> dict[str, Any]:
        if not final:  # like real streams: only prompt counts until the last event
            return {"promptTokenCount": self.prompt_tokens, "totalTokenCount": self.prompt_tokens}
        usage: dict[str, Any] = {
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": self.output_tokens,
            "totalTokenCount": self.prompt_tokens + self.output_tokens + self.thoughts_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt_tokens}],
        }
        if self.cached_tokens:
            usage["cachedContentTokenCount"] = self.cached_tokens
        if self.thoughts_tokens:
            usage["thoughtsTokenCount"] = self.thoughts_tokens
        return usage

    def event(self, text: str, *, final: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"index": 0}
        if text:
            candidate["content"] = {"role": "model", "parts": [{"text": text}]}
        if final:
            candidate["finishReason"] = self.finish_reason or "STOP"
        return {
            "candidates": [candidate],
            "usageMetadata": self.usage(final=final),
            "modelVersion": self.model,
            "responseId": "fake-response",
        }

    def blocked_event(self) -> dict[str, Any]:
        return {
            "promptFeedback": {"blockReason": self.reply.block_reason},
            "usageMetadata": {"promptTokenCount": self.prompt_tokens, "totalTokenCount": self.prompt_tokens},
            "modelVersion": self.model,
            "responseId": "fake-response",
        }
