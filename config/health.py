"""GET /healthz: is every part the product needs answering?

200 with every check ok, 503 otherwise. Each check is bounded in time so a dead
dependency makes the answer slow by at most a couple of seconds, never hang.
"""

import time
from collections.abc import Callable

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_redis import get_redis_connection

from config.celery import app as celery_app

CELERY_PING_TIMEOUT = 1.5


def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def check_pgvector() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    if row is None:
        raise RuntimeError("the vector extension is not installed; run migrate")
    return {"version": row[0]}


def check_redis() -> dict:
    get_redis_connection("default").ping()
    return {}


def check_celery() -> dict:
    replies = celery_app.control.ping(timeout=CELERY_PING_TIMEOUT, limit=1)
    if not replies:
        raise RuntimeError(f"no worker answered a ping within {CELERY_PING_TIMEOUT}s")
    return {"workers": [name for reply in replies for name in reply]}


CHECKS: dict[str, Callable[[], dict]] = {
    "database": check_database,
    "pgvector": check_pgvector,
    "redis": check_redis,
    "celery": check_celery,
}


def run_checks() -> dict[str, dict]:
    results = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            result = {"ok": True, **check()}
        except Exception as error:  # noqa: BLE001 - any failure is the answer
            result = {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
        result["ms"] = round((time.perf_counter() - started) * 1000, 1)
        results[name] = result
    return results


@never_cache
@require_GET
def healthz(request):
    checks = run_checks()
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )
