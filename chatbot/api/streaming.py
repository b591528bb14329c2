"""An answer as server-sent events, for every channel that streams (the REST API, the widget).

event: delta  data: {"text": "..."}      as the answer is written
event: done   data: <the channel's body>  exactly once, at the end
event: error  data: {"error": {...}}      instead of done, when it fails after headers
"""

import json
import logging
from collections.abc import Callable, Iterator

from django.http import StreamingHttpResponse

from chatbot import pipeline
from chatbot.api.errors import error_body

logger = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
INTERNAL_ERROR = "Something went wrong on our side; the error was logged."


def answer_event_stream(
    inbound: pipeline.Inbound, *, done_body: Callable[[pipeline.Answer], dict]
) -> StreamingHttpResponse:
    """The answer as server-sent events; `done_body` shapes the final event.

    Runs the pipeline up to its first item before sending headers, so a message it
    refuses raises `pipeline.InvalidMessage` here (nothing stored) and the caller
    answers it as a plain 400, not as an event in a 200 stream.
    """
    stream = pipeline.answer_stream(inbound)
    try:
        first = next(stream)
    except StopIteration:
        raise RuntimeError("the answer stream ended without an answer") from None
    waiting = isinstance(first, pipeline.Answer) and first.reply is None
    response = StreamingHttpResponse(
        _events(first, stream, done_body), content_type=EVENT_STREAM, status=202 if waiting else 200
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx would otherwise hold the deltas back
    return response


def _events(
    first: str | pipeline.Answer,
    stream: Iterator[str | pipeline.Answer],
    done_body: Callable[[pipeline.Answer], dict],
) -> Iterator[bytes]:
    try:
        item = first
        while not isinstance(item, pipeline.Answer):
            yield _event("delta", {"text": item})
            item = next(stream)
        yield _event("done", done_body(item))
    except StopIteration:
        logger.error("the answer stream ended without an answer")
        yield _event("error", error_body("internal_error", "The answer stream ended early."))
    except pipeline.InvalidMessage as error:
        yield _event("error", error_body(error.code, str(error)))
    except Exception:
        # Headers are sent: the client can only be told in the stream.
        logger.exception("the answer stream failed")
        yield _event("error", error_body("internal_error", INTERNAL_ERROR))
    finally:
        # Also runs when the client goes away (the server closes this generator):
        # the pipeline then finishes the message as cut off.
        stream.close()


def _event(name: str, data: dict) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {name}\ndata: {payload}\n\n".encode()
