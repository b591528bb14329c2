"""Loopback fakes of third-party HTTP APIs, driven in tests by the vendors' real SDKs.

Each fake is a real HTTP/1.1 server on 127.0.0.1 (a free port) in a background
thread. It records every request, can answer the next N requests with an error,
and can delay every answer (`latency`, seconds) to test timeouts or to make
ingestion benchmarks realistic. Vendor fakes subclass `FakeServer` and
`FakeHandler`; see gemini_server.py and bedrock_server.py.
"""

import functools
import hashlib
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

import numpy as np


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # as sent, without the query string (percent-encoding kept)
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON, or None when the body is empty or not JSON
    raw_body: bytes


@dataclass(frozen=True)
class CannedResponse:
    status: int
    body: bytes
    headers: dict[str, str]


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs expect
    timeout = 10  # idle keep-alive connections are dropped, so handler threads end
    # Headers and body go out as two writes; with Nagle's algorithm the body waits for the
    # client's delayed ACK of the headers: 40 ms added to every call on keep-alive.
    disable_nagle_algorithm = True
    server: "_HTTPServer"

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except ConnectionResetError:
            # The client reset a kept-alive connection (its timeout fired mid-answer, or
            # it dropped a stream): not an error of the fake.
            self.close_connection = True

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        split = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            raw_body=raw_body,
        )
        fake._record(request)
        try:
            if fake.latency:
                time.sleep(fake.latency)
            canned = fake._next_canned()
            if canned is not None:
                self.send(canned.status, canned.body, canned.headers)
            else:
                self.route(request)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout fired) before we answered.
            self.close_connection = True

    def route(self, request: RecordedRequest) -> None:
        raise NotImplementedError

    def send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; requests are recorded instead


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops connection bursts (a load benchmark): 1 s SYN retries
    fake: "FakeServer"


class FakeServer:
    handler_class: ClassVar[type[FakeHandler]] = FakeHandler

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.latency: float = 0.0
        self._canned: deque[CannedResponse] = deque()
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._httpd = _HTTPServer(("127.0.0.1", 0), self.handler_class)
        self._httpd.fake = self
        # A short poll interval so stopping the server does not cost half a second per test.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def respond_next(
        self, status: int, body: bytes, *, headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        """Answer the next `times` requests, whatever they are, with this response."""
        with self._lock:
            self._canned.extend(CannedResponse(status, body, dict(headers or {})) for _ in range(times))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._canned.clear()
        self.latency = 0.0

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_canned(self) -> CannedResponse | None:
        with self._lock:
            return self._canned.popleft() if self._canned else None


# Pseudo-embeddings: a bag of hashed words. Identical texts get identical vectors
# and texts that share words are closer than unrelated ones, so ranking tests mean
# something without a real model.
_WORD = re.compile(r"\w+")
_TOKEN = re.compile(r"\w+|[^\w\s]")


@functools.lru_cache(maxsize=8192)
def _word_direction(word: str, size: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big")
    direction = np.random.default_rng(seed).standard_normal(size)
    direction.flags.writeable = False  # shared by the cache
    return direction


def bag_of_words_vector(text: str, size: int) -> np.ndarray:
    """A unit vector of `size` floats for `text`."""
    words = _WORD.findall(text.casefold()) or [text]
    vector = np.sum([_word_direction(word, size) for word in words], axis=0)
    return vector / np.linalg.norm(vector)


def count_tokens(text: str) -> int:
    """The fakes' deterministic token count: words and punctuation marks."""
    return len(_TOKEN.findall(text))
