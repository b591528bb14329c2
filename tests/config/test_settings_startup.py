"""Settings are read at start: a bad value stops the process with one clear line."""

import os
import secrets
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_DIR


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    # A fresh process as an operator would start it: none of the suite's own switches.
    inherited = {key: value for key, value in os.environ.items() if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env={**inherited, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://root@localhost/shop"),
        ("DATABASE_URL", "postgres://db.example.com:port/shop"),
        ("REDIS_URL", "http://localhost:6379"),
        ("REDIS_URL", "redis://localhost:6379/first"),
        ("DEBUG", "perhaps"),
        ("TIME_ZONE", "Mars/Olympus_Mons"),
        ("ZALO_OPENAPI_URL", "openapi.zalo.me"),
    ],
)
def test_a_malformed_setting_stops_start_with_a_message_naming_it(variable, value):
    result = manage("check", **{variable: value})

    assert result.returncode == 2
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_the_production_settings_pass_the_deployment_checklist():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="support.example.com",
        CSRF_TRUSTED_ORIGINS="https://support.example.com",
        HTTPS="1",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
