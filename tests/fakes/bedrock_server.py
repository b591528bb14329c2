"""A loopback fake of the Bedrock runtime API (bedrock-runtime.<region>.amazonaws.com).

Speaks what boto3's `bedrock-runtime` client sends and parses (docs:
/work/shared/specs/llm-protocols.md §5): `POST /model/{url-encoded modelId}/{operation}`
signed with SigV4 (the signature is not verified, the access key id is), and errors
as an HTTP status, an `x-amzn-ErrorType` header and `{"message": ...}`. Implemented:
InvokeModel for Amazon Titan Text Embeddings V2. To add an operation (converse,
converse-stream, count-tokens), write a handler taking `(self, call)` and add it to
`BedrockHandler.operations`; a model for InvokeModel goes in `BedrockHandler.models`.
A handler returns (body, headers) for a 200, raises BedrockApiError, or writes the
response itself (event-stream frames) and returns None.
"""

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast
from urllib.parse import unquote

from tests.fakes import FakeHandler, FakeServer, RecordedRequest, bag_of_words_vector, count_tokens

ROUTE = re.compile(r"^/model/(?P<model>[^/]+)/(?P<operation>[\w-]+)$")
CREDENTIAL = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/"
)

TITAN_V2 = "amazon.titan-embed-text-v2:0"
TITAN_V2_KEYS = {"inputText", "dimensions", "normalize", "embeddingTypes"}
TITAN_V2_DIMENSIONS = (256, 512, 1024)
TITAN_V2_MAX_TOKENS = 8192

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

    # Operation (the last path segment) -> handler.
    operations: ClassVar[dict[str, Callable[["BedrockHandler", BedrockCall], Reply]]] = {
        "invoke": invoke,
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
