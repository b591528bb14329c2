"""`make run` end to end: a fresh data folder, embedded servers, web, worker and beat."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import psutil
import requests

from tests.conftest import PROJECT_DIR, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_serve(var_dir, port: int) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(VAR_DIR=str(var_dir), PORT=str(port), DJANGO_SETTINGS_MODULE="config.settings",
               WEB_CONCURRENCY="1", CELERY_CONCURRENCY="1")  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "manage.py", "serve"],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(process: subprocess.Popen, pattern: str, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"{pattern!r} not printed; output was:\n{''.join(seen)}")


def processes_using(var_dir) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "environ", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(process.info["cmdline"] or [])
            environ = process.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(var_dir) in cmdline or environ.get("VAR_DIR") == str(var_dir):
            found.append(process)
    return found


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)


def test_run_serves_health_and_admin_then_stops_cleanly_and_keeps_data_on_restart(tmp_path):
    var_dir = tmp_path / "var"
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    serve = start_serve(var_dir, port)
    try:
        login = read_until(serve, r"user admin\s+password (\S+)", timeout=180)
        password = login.group(1)
        wait_until(lambda: _get(f"{base}/healthz") == 200, timeout=60, message="healthz to be 200")

        session = requests.Session()
        page = session.get(f"{base}/admin/login/", timeout=5)
        assert page.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        signed_in = session.post(
            f"{base}/admin/login/?next=/admin/",
            data={"username": "admin", "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base}/admin/login/"},
            timeout=5,
        )
        assert signed_in.status_code == 200
        assert signed_in.url == f"{base}/admin/"
        bots = session.get(f"{base}/admin/chatbot/bot/", timeout=10)
        assert "Sao Mai assistant" in bots.text  # the demo bot, slug "demo"
    finally:
        stop(serve)

    assert serve.returncode == 0
    assert processes_using(var_dir) == []

    serve = start_serve(var_dir, port)
    try:
        again = read_until(serve, r"user admin\s+password (\S+)", timeout=120)
        assert again.group(1) == password
        wait_until(lambda: _get(f"{base}/healthz") == 200, timeout=60, message="healthz to be 200")
    finally:
        stop(serve)
    assert processes_using(var_dir) == []


def _get(url: str) -> int | None:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.RequestException:
        return None
