import pytest
from django.test import override_settings


@pytest.mark.django_db(transaction=True)
def test_health_is_200_when_database_pgvector_redis_and_a_worker_answer(client, celery_worker_process):
    response = client.get("/healthz")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert {name for name, check in body["checks"].items() if check["ok"]} == {
        "database",
        "pgvector",
        "redis",
        "celery",
    }
    assert body["checks"]["celery"]["workers"]
    assert body["checks"]["pgvector"]["version"]


@pytest.mark.django_db
def test_health_is_503_and_names_redis_when_redis_is_down(client, tmp_path):
    dead = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"unix://{tmp_path}/nothing-listens-here.sock",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }
    with override_settings(CACHES=dead):
        response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"]["ok"] is False
    assert "Connection" in body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["ok"] is True


def test_health_only_answers_get(client):
    assert client.post("/healthz").status_code == 405
