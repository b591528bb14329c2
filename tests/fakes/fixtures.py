"""Fixtures that start the loopback fakes and point the settings and SDK clients at them.

Registered for the whole suite by `pytest_plugins` in tests/conftest.py.
"""

from collections.abc import Iterator

import pytest

from tests.fakes.bedrock_server import BedrockServer
from tests.fakes.gemini_server import GeminiServer

# Environment variables the SDKs read that could send test traffic elsewhere.
_GOOGLE_ENV = (
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_ENTERPRISE",
    "GOOGLE_GEMINI_BASE_URL",
    "GOOGLE_GENAI_API_VERSION",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
)
_AWS_ENV = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME")


def _keep_loopback_off_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx2 and botocore honour *_PROXY variables; loopback must never go through one.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def gemini_server(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[GeminiServer]:
    """A fake Gemini API; GEMINI_BASE_URL and GEMINI_API_KEY point at it for the test."""
    from chatbot.llm import gemini as chat_gemini
    from knowledge.embedding import gemini

    for name in _GOOGLE_ENV:
        monkeypatch.delenv(name, raising=False)
    _keep_loopback_off_proxies(monkeypatch)
    with GeminiServer() as server:
        settings.GEMINI_BASE_URL = server.url
        settings.GEMINI_API_KEY = server.api_key
        gemini.reset_clients()
        chat_gemini.reset_clients()
        try:
            yield server
        finally:
            gemini.reset_clients()
            chat_gemini.reset_clients()


@pytest.fixture
def bedrock_server(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[BedrockServer]:
    """A fake Bedrock runtime; BEDROCK_ENDPOINT_URL points at it and dummy AWS credentials are set."""
    from chatbot.llm import bedrock as chat_bedrock
    from knowledge.embedding import bedrock

    for name in _AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never probe the instance metadata service
    _keep_loopback_off_proxies(monkeypatch)
    with BedrockServer(access_key_id="testing") as server:
        settings.BEDROCK_ENDPOINT_URL = server.url
        settings.AWS_REGION = "us-east-1"
        bedrock.reset_clients()
        chat_bedrock.reset_clients()
        try:
            yield server
        finally:
            bedrock.reset_clients()
            chat_bedrock.reset_clients()
