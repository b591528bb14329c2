"""REST API rate limits in the real Redis: per key and per address, 429 with Retry-After, then recovery."""

import threading
import time

import pytest
from django.core.cache import cache
from django.test import override_settings
from django_redis import get_redis_connection

from chatbot.api import ratelimit
from chatbot.api.ratelimit import Bucket, rate_limit_hit
from chatbot.api_keys import api_key_create
from chatbot.models import Bot
from tests.knowledge.helpers import make_knowledge_base

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_redis")]


@pytest.fixture
def bot() -> Bot:
    return Bot.objects.create(name="Shop", slug="shop", knowledge_base=make_knowledge_base("Shop"))


@pytest.fixture
def limits(settings):
    settings.API_RATE_LIMIT_PER_KEY_PER_MINUTE = 1000
    settings.API_RATE_LIMIT_PER_IP_PER_MINUTE = 1000
    return settings


def new_token(bot: Bot) -> str:
    return api_key_create(bot=bot, name="backend")[1]


def read(client, token: str | None, **meta):
    # An unknown conversation is a cheap request that still passes every check.
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get("/api/v1/conversations/999999", headers=headers, **meta)


def short_windows(monkeypatch) -> None:
    # Real Redis expiry, just a shorter window than a minute.
    monkeypatch.setattr(ratelimit, "WINDOW_SECONDS", 1)


def test_a_key_over_its_limit_gets_429_with_retry_after_and_is_served_again_in_the_next_window(
    client, bot, limits, monkeypatch
):
    short_windows(monkeypatch)
    limits.API_RATE_LIMIT_PER_KEY_PER_MINUTE = 3
    token = new_token(bot)

    statuses = [read(client, token).status_code for _ in range(3)]
    limited = read(client, token)

    assert statuses == [404, 404, 404]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert "this API key" in limited.json()["error"]["message"]
    assert limited["Retry-After"] == "1"
    time.sleep(1.1)
    assert read(client, token).status_code == 404


def test_the_key_limit_is_per_key(client, bot, limits):
    limits.API_RATE_LIMIT_PER_KEY_PER_MINUTE = 2
    busy, quiet = new_token(bot), new_token(bot)

    for _ in range(3):
        read(client, busy)

    assert read(client, busy).status_code == 429
    assert read(client, quiet).status_code == 404


def test_the_retry_after_of_a_minute_window_says_how_long_is_left(client, bot, limits):
    limits.API_RATE_LIMIT_PER_KEY_PER_MINUTE = 1
    token = new_token(bot)

    read(client, token)
    limited = read(client, token)

    assert limited.status_code == 429
    assert 55 <= int(limited["Retry-After"]) <= 60


def test_one_address_over_its_limit_gets_429_whatever_key_it_uses_and_recovers(
    client, bot, limits, monkeypatch
):
    short_windows(monkeypatch)
    limits.API_RATE_LIMIT_PER_IP_PER_MINUTE = 3
    tokens = [new_token(bot) for _ in range(4)]

    statuses = [read(client, token, REMOTE_ADDR="203.0.113.7").status_code for token in tokens]
    elsewhere = read(client, tokens[0], REMOTE_ADDR="198.51.100.2")

    assert statuses == [404, 404, 404, 429]
    assert elsewhere.status_code == 404
    time.sleep(1.1)
    assert read(client, tokens[3], REMOTE_ADDR="203.0.113.7").status_code == 404


def test_guessing_keys_counts_against_the_address(client, bot, limits):
    limits.API_RATE_LIMIT_PER_IP_PER_MINUTE = 3
    token = new_token(bot)

    guesses = [read(client, "sk_bot_0123456789abcdef_guess").status_code for _ in range(2)]
    missing = read(client, None)
    limited = read(client, token)

    assert guesses == [401, 401] and missing.status_code == 401
    assert limited.status_code == 429
    assert "your address" in limited.json()["error"]["message"]


def test_x_forwarded_for_is_ignored_without_a_trusted_proxy(client, bot, limits):
    limits.API_RATE_LIMIT_PER_IP_PER_MINUTE = 2
    token = new_token(bot)

    statuses = [read(client, token, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").status_code for n in range(3)]

    assert statuses == [404, 404, 429]


def test_behind_a_trusted_proxy_the_address_it_added_last_is_the_client(client, bot, limits):
    limits.API_RATE_LIMIT_PER_IP_PER_MINUTE = 2
    limits.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    token = new_token(bot)

    # A client can put anything first; the proxy's own entry comes last.
    one = [read(client, token, HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 192.0.2.1").status_code for n in range(3)]
    other = read(client, token, HTTP_X_FORWARDED_FOR="192.0.2.2")

    assert one == [404, 404, 429]
    assert other.status_code == 404


def test_a_limit_of_zero_turns_that_limit_off(client, bot, limits):
    limits.API_RATE_LIMIT_PER_KEY_PER_MINUTE = 0
    limits.API_RATE_LIMIT_PER_IP_PER_MINUTE = 0
    token = new_token(bot)

    assert {read(client, token).status_code for _ in range(5)} == {404}
    assert get_redis_connection("default").keys("*ratelimit*") == []


def test_when_redis_is_down_requests_are_served_and_a_warning_is_logged(
    client, bot, limits, tmp_path, caplog
):
    limits.API_RATE_LIMIT_PER_KEY_PER_MINUTE = 1
    token = new_token(bot)
    dead = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"unix://{tmp_path}/nothing-listens-here.sock",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }
    with override_settings(CACHES=dead):
        statuses = [read(client, token).status_code for _ in range(3)]

    assert statuses == [404, 404, 404]
    assert "rate limits not checked" in caplog.text


def test_counting_from_many_threads_at_once_loses_no_increment():
    bucket = Bucket("key", cache.make_key("ratelimit:test:threads"), limit=1_000_000)

    def hammer():
        for _ in range(50):
            rate_limit_hit(buckets=[bucket])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    redis = get_redis_connection("default")
    assert int(redis.get(bucket.key)) == 200
    assert 0 < redis.pttl(bucket.key) <= 60_000
