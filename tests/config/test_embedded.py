"""With no DATABASE_URL or REDIS_URL, the product runs on embedded real servers."""

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from config.embedded import _redis_answers, start_redis


def test_the_database_is_postgresql_with_the_vector_extension(db):
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        (version,) = cursor.fetchone()
        cursor.execute("SELECT '[1,2,3]'::vector <=> '[1,2,4]'::vector")
        (distance,) = cursor.fetchone()

    assert int(version) >= 150000
    assert 0 < distance < 0.01


def test_the_cache_round_trips_through_redis():
    cache.set("embedded-check", {"answer": 42}, timeout=30)

    assert cache.get("embedded-check") == {"answer": 42}
    assert settings.CACHES["default"]["BACKEND"] == "django_redis.cache.RedisCache"


def test_an_embedded_redis_starts_keeps_its_data_dir_and_answers(tmp_path):
    url = start_redis(tmp_path / "redis")
    socket_path = url.removeprefix("unix://").split("?")[0]
    client = redis.Redis(unix_socket_path=socket_path)

    client.set("k", "v")

    assert client.get("k") == b"v"
    assert (tmp_path / "redis" / "redis.conf").exists()
    assert start_redis(tmp_path / "redis") == url  # a second call reuses the running server
    client.shutdown(nosave=True)
    assert not _redis_answers(tmp_path / "redis" / "redis.sock")


def test_processes_starting_at_the_same_moment_share_one_embedded_redis(tmp_path):
    import subprocess
    import sys

    import psutil

    from tests.conftest import PROJECT_DIR

    script = (
        "import sys, time; from pathlib import Path; from config.embedded import start_redis; "
        "print(start_redis(Path(sys.argv[1])), flush=True); time.sleep(4)"
    )
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "redis")],
            cwd=PROJECT_DIR,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    urls = {starter.stdout.readline().strip() for starter in starters}
    socket_path = next(iter(urls)).removeprefix("unix://").split("?")[0]
    servers = [
        process
        for process in psutil.process_iter(["cmdline"])
        if f"unixsocket:{socket_path}" in " ".join(process.info["cmdline"] or [])
    ]
    for starter in starters:
        starter.wait(timeout=30)

    assert len(urls) == 1
    assert len(servers) == 1
