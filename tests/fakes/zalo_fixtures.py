"""The loopback Zalo for the whole test session, and the `zalo_server` fixture.

One fake serves the session and its address is in the environment before any test
runs, so the Celery worker process the suite starts (whenever a test first needs it)
sends to the fake too: no test, and no task a test enqueues, can reach Zalo.
Registered by `pytest_plugins` in tests/conftest.py.
"""

import os
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings

from tests.fakes.zalo_server import ZaloServer

_URL_SETTINGS = ("ZALO_OPENAPI_URL", "ZALO_OAUTH_URL")


@pytest.fixture(scope="session", autouse=True)
def zalo_session_server() -> Iterator[ZaloServer]:
    server = ZaloServer().start()
    saved = {name: os.environ.get(name) for name in (*_URL_SETTINGS, "NO_PROXY", "no_proxy")}
    for name in _URL_SETTINGS:
        os.environ[name] = server.url
        setattr(django_settings, name, server.url)
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = ",".join(filter(None, [os.environ.get(name), "127.0.0.1", "localhost"]))
    try:
        yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


@pytest.fixture
def zalo_server(zalo_session_server: ZaloServer, settings) -> Iterator[ZaloServer]:
    """The fake Zalo, started over (default configuration, a fresh token pair, nothing sent)."""
    from chatbot.zalo import client

    zalo_session_server.reset()
    for name in _URL_SETTINGS:
        setattr(settings, name, zalo_session_server.url)
    client.reset_clients()
    try:
        yield zalo_session_server
    finally:
        client.reset_clients()
        zalo_session_server.reset()


def make_zalo_bot(server: ZaloServer, *, slug: str = "sao-mai", **bot_fields):
    """A bot whose Zalo account holds the fake's current credentials and token pair."""
    from datetime import timedelta

    from django.utils import timezone

    from chatbot.models import Bot, ZaloAccount
    from tests.knowledge.helpers import make_knowledge_base

    bot_fields.setdefault("name", "Sao Mai assistant")
    bot = Bot.objects.create(slug=slug, knowledge_base=make_knowledge_base(f"{slug} shop"), **bot_fields)
    now = timezone.now()
    ZaloAccount.objects.create(
        bot=bot,
        app_id=server.app_id,
        app_secret=server.app_secret,
        oa_secret_key=server.oa_secret_key,
        oa_id=server.oa_id,
        access_token=server.access_token,
        access_token_expires_at=now + timedelta(seconds=server.access_ttl_s),
        refresh_token=server.refresh_token,
        refresh_token_issued_at=now,
    )
    return bot


@pytest.fixture
def zalo_bot(zalo_server: ZaloServer):
    """A bot connected to the fake Zalo (the test needs a database mark)."""
    return make_zalo_bot(zalo_server)
