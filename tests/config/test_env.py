import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import (
    celery_broker_url,
    check_redis_url,
    database_from_url,
    env_base_url,
    env_bool,
    env_int,
    redis_url_with_db,
)


def test_a_database_url_becomes_a_django_database():
    database = database_from_url("postgres://bot:s%40cret@db.example.com:5433/shop?sslmode=require")

    assert database["NAME"] == "shop"
    assert database["USER"] == "bot"
    assert database["PASSWORD"] == "s@cret"
    assert database["HOST"] == "db.example.com"
    assert database["PORT"] == "5433"
    assert database["OPTIONS"] == {"sslmode": "require"}


def test_a_socket_directory_is_taken_from_the_host_parameter():
    database = database_from_url("postgresql://postgres:@/chatbot?host=/tmp/pg")

    assert database["HOST"] == "/tmp/pg"
    assert database["OPTIONS"] == {}


@pytest.mark.parametrize(
    "url",
    ["mysql://db/shop", "postgres://db.example.com", "postgres://db.example.com:port/shop", "not a url"],
)
def test_a_malformed_database_url_names_the_variable(url):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        database_from_url(url)


@pytest.mark.parametrize(
    "url", ["http://cache:6379/0", "redis://", "unix://", "redis://cache:6379/zero", "redis://cache:x/0"]
)
def test_a_malformed_redis_url_names_the_variable(url):
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        check_redis_url(url)


def test_a_unix_socket_redis_url_becomes_a_kombu_socket_url():
    assert (
        celery_broker_url("unix:///var/run/redis.sock?db=3")
        == "redis+socket:///var/run/redis.sock?virtual_host=3"
    )
    assert celery_broker_url("rediss://cache:6380/2") == "rediss://cache:6380/2"


def test_the_redis_database_number_can_be_changed():
    assert redis_url_with_db("redis://cache:6379/0", 1) == "redis://cache:6379/1"
    assert redis_url_with_db("unix:///tmp/r.sock?db=0", 4) == "unix:///tmp/r.sock?db=4"


def test_booleans_accept_common_words_and_refuse_others(monkeypatch):
    monkeypatch.setenv("DEBUG", "yes")
    assert env_bool("DEBUG") is True
    monkeypatch.setenv("DEBUG", "0")
    assert env_bool("DEBUG") is False
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG"):
        env_bool("DEBUG")


def test_integers_are_checked(monkeypatch):
    monkeypatch.setenv("PORT", "80x")
    with pytest.raises(ImproperlyConfigured, match="PORT"):
        env_int("PORT", 8000)


def test_zalo_base_urls_hold_scheme_and_host_only(monkeypatch):
    monkeypatch.setenv("ZALO_OPENAPI_URL", "http://127.0.0.1:9000/")
    assert env_base_url("ZALO_OPENAPI_URL", "https://openapi.zalo.me") == "http://127.0.0.1:9000"
    monkeypatch.setenv("ZALO_OPENAPI_URL", "https://openapi.zalo.me/v3.0/oa")
    with pytest.raises(ImproperlyConfigured, match="ZALO_OPENAPI_URL"):
        env_base_url("ZALO_OPENAPI_URL", "https://openapi.zalo.me")
