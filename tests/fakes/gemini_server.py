"""A loopback fake of the Gemini Developer API (generativelanguage.googleapis.com).

Speaks the protocol google-genai 3.x uses (docs: /work/shared/specs/llm-protocols.md
§2): `POST /{v1|v1beta|v1alpha}/models/{model}:{method}`, the `x-goog-api-key`
header, `{"error": {"code", "message", "status"}}` error bodies, and only 200
counts as success. Implemented methods: batchEmbedContents (what the SDK uses for
every embed_content call), embedContent and countTokens. To add a method
(generateContent, streamGenerateContent), write a handler taking `(self, call)`
and add it to `GeminiHandler.methods`: return the JSON body of a 200, raise
GeminiApiError for an error, or write the response yourself (SSE: `self.send_response`,
chunks to `self.wfile`) and return None. The query string is in `call.request.query`.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from tests.fakes import FakeHandler, FakeServer, RecordedRequest, bag_of_words_vector, count_tokens

ROUTE = re.compile(
    r"^(?P<prefix>.*?)/(?P<version>v1|v1beta|v1alpha)/models/(?P<model>[^/:]+):(?P<method>\w+)$"
)

EMBEDDING_MODELS = {"gemini-embedding-001", "gemini-embedding-2", "gemini-embedding-2-preview"}
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

    # Method name -> handler. generateContent and streamGenerateContent go here.
    methods: ClassVar[dict[str, Callable[["GeminiHandler", GeminiCall], dict[str, Any] | None]]] = {
        "batchEmbedContents": batch_embed_contents,
        "embedContent": embed_content,
        "countTokens": count_tokens,
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

    def __init__(self, *, api_key: str = "test-key", report_usage: bool = False) -> None:
        super().__init__()
        self.api_key = api_key
        # The real batchEmbedContents reports no usage; turn this on to test the other path.
        self.report_usage = report_usage

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
