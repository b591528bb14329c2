import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from config.celery import app as celery_app
from config.env import database_url_with_name

pytest_plugins = ["tests.fakes.fixtures", "tests.fakes.zalo_fixtures", "tests.browser"]
PROJECT_DIR = Path(__file__).resolve().parent.parent


def wait_until(condition, *, timeout: float, interval: float = 0.2, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker):
    """A real Celery worker process on the test database and the test Redis database.

    Tests that use it must commit their data (transactional_db), since the worker
    reads through its own connection.
    """
    with django_db_blocker.unblock():
        test_database = connection.settings_dict["NAME"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": database_url_with_name(os.environ["DATABASE_URL"], test_database),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--queues", "default,chat,ingest",
         "--concurrency", "2", "--loglevel", "WARNING", "--hostname", "test-worker@%h"],
        cwd=PROJECT_DIR,
        env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(
            lambda: bool(celery_app.control.ping(timeout=0.5)) or process.poll() is not None,
            timeout=60,
            message="the Celery worker to answer a ping",
        )
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with code {process.returncode}")
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def fresh_redis():
    """The test Redis database emptied before and after the test: rate-limit counters, cached
    answers, and tasks that committed data enqueued (none may outlive a test in the broker)."""
    from django_redis import get_redis_connection

    get_redis_connection("default").flushdb()
    yield
    get_redis_connection("default").flushdb()


@pytest.fixture(scope="session", autouse=True)
def _keyword_search_threads_disconnect_before_the_test_database_is_dropped(django_db_setup):
    yield
    from knowledge.retrieval import keyword_pool_shutdown

    keyword_pool_shutdown()


@pytest.fixture(autouse=True)
def _reseed_prices_after_a_flush(request, django_db_blocker):
    """Tests that commit (transactional_db, live_server) end with a flush of every table, which
    also empties the price list the migrations seeded; put it back for the tests after them."""
    yield
    if not {"transactional_db", "live_server"} & set(request.fixturenames):
        return
    from billing.selectors import price_list_forget
    from tests.billing.helpers import seed_prices

    with django_db_blocker.unblock():
        seed_prices()
    price_list_forget()  # a flush deletes without signals
