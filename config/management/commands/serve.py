"""Run the whole product in one terminal: web, one Celery worker and beat.

Prepares the database first (migrate, static files, demo data), then supervises the
three processes until Ctrl-C or SIGTERM, and stops them in order: the processes
first, then the embedded Redis and PostgreSQL this process started (see
config.embedded). If any process dies, the others are stopped too.

Web capacity is WEB_CONCURRENCY processes x WEB_THREADS threads (default 4 x 16): a
thread is busy for a whole answer, mostly waiting on the LLM, so 500 customers asking
every ~10 s with ~1 s answers keep ~50 threads busy (bench/load.py). More processes
with fewer threads each wait less for the GIL: at 30 answers a second 4 x 16 gave p95
1.2 s where 2 x 32 gave 1.7 s (docs/benchmarks.md), for ~200 MB per process. Each
thread holds its own PostgreSQL connection (DATABASE_CONN_MAX_AGE), and so does each
process's keyword-search thread (knowledge.retrieval.KEYWORD_THREADS, 2): with the
defaults 64 + 8 for the web and 6 for Celery, under the embedded server's 100
max_connections. Raise processes or threads and a managed server needs room (or a pooler).
"""

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from config.demo import demo_password, seed_demo
from config.env import env_int, env_str

PR_SET_PDEATHSIG = 1
STOP_GRACE_SECONDS = 20


def _die_with_parent() -> None:
    # Linux: if this supervisor is killed outright, its children get SIGTERM rather
    # than living on as orphans.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Command(BaseCommand):
    help = "Migrate, load demo data and run web (gunicorn), a Celery worker and beat until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--no-demo", action="store_true", help="Do not load the demo data.")

    def handle(self, *args, **options) -> None:
        host = env_str("HOST", "127.0.0.1")
        port = env_int("PORT", 8000, minimum=1)
        web_workers = env_int("WEB_CONCURRENCY", 4, minimum=1)
        web_threads = env_int("WEB_THREADS", 16, minimum=1)
        worker_concurrency = env_int("CELERY_CONCURRENCY", 2, minimum=1)

        call_command("migrate", interactive=False, verbosity=1)
        call_command("collectstatic", interactive=False, verbosity=0)
        if not options["no_demo"]:
            logins = seed_demo()
            self._print_logins(logins, f"http://{host}:{port}/admin/")

        python = sys.executable
        commands = {
            "web": [
                python, "-m", "gunicorn", "config.wsgi:application",
                "--bind", f"{host}:{port}",
                "--workers", str(web_workers),
                "--worker-class", "gthread", "--threads", str(web_threads),
                "--graceful-timeout", "10",
                # Longer than a bot's answer budget (25 s) plus retrieval, so a slow answer is not killed.
                "--timeout", "60",
                "--access-logfile", "-",
            ],
            "worker": [
                python, "-m", "celery", "-A", "config", "worker",
                "--queues", "default,chat,ingest",
                "--concurrency", str(worker_concurrency),
                "--loglevel", "INFO",
            ],
            "beat": [
                python, "-m", "celery", "-A", "config", "beat",
                "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME,
                "--loglevel", "INFO",
            ],
        }  # fmt: skip
        self._supervise(commands)

    def _print_logins(self, logins, admin_url: str) -> None:
        password = demo_password()
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Admin: {admin_url}"))
        for login in logins:
            shown = password if login.password_is_current else "(changed since it was created)"
            self.stdout.write(f"  user {login.username:<8} password {shown}   ({login.role})")
        self.stdout.write("Press Ctrl-C to stop.\n")
        self.stdout.flush()

    def _supervise(self, commands: dict[str, list[str]]) -> None:
        stopping = False

        def request_stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

        processes: dict[str, subprocess.Popen] = {}
        for name, argv in commands.items():
            # A session of their own, so Ctrl-C reaches only this supervisor, which
            # then stops them in order.
            processes[name] = subprocess.Popen(argv, start_new_session=True, preexec_fn=_die_with_parent)

        exit_code = 0
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    self.stderr.write(f"{name} exited with code {process.returncode}; stopping everything")
                    exit_code = 1
                    stopping = True
                    break
            time.sleep(0.3)

        self.stdout.write("Stopping web, worker and beat...")
        self._stop(processes)
        self.stdout.write("Stopped.")
        if exit_code:
            sys.exit(exit_code)

    def _stop(self, processes: dict[str, subprocess.Popen]) -> None:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, process in processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop in {STOP_GRACE_SECONDS}s; killing it")
            # Kill the whole group: a master that exited may have left workers.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
