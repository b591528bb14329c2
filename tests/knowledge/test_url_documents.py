"""A web page as a document: fetched by the worker, main content only, bounded."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from knowledge import services
from tests.knowledge.helpers import ingest, make_knowledge_base

pytestmark = pytest.mark.django_db

PAGE = """<!doctype html><html><head><title>Shipping</title></head><body>
<nav><a href="/">Home</a> <a href="/shop">Shop</a> Menu Cart Login</nav>
<main><h1>Shipping</h1><p>Orders over 500,000 VND ship free anywhere in Vietnam.</p></main>
<footer>Copyright Sao Mai. All rights reserved.</footer></body></html>"""


class Site(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/shipping":
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/huge":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"<p>" + b"x" * 65536 + b"</p>")
        else:
            self.send_error(404)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_web_page_is_indexed_without_its_navigation_and_footer(site):
    document = services.document_create_from_url(
        knowledge_base=make_knowledge_base(), url=f"{site}/shipping", title="Shipping"
    )

    ingest(document)

    assert document.status == "ready", document.error
    text = " ".join(document.chunks.values_list("text", flat=True))
    assert "ship free anywhere in Vietnam" in text
    assert "Copyright" not in text and "Login" not in text


def test_a_missing_page_fails_with_the_http_status(site):
    document = services.document_create_from_url(knowledge_base=make_knowledge_base(), url=f"{site}/gone")

    ingest(document)

    assert document.status == "failed"
    assert "404" in document.error


def test_a_page_over_the_size_limit_fails_without_reading_it_all(site, settings):
    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 1024 * 1024
    document = services.document_create_from_url(knowledge_base=make_knowledge_base(), url=f"{site}/huge")

    ingest(document)

    assert document.status == "failed"
    assert "limit" in document.error
