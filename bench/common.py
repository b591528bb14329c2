"""Shared by the benchmark scripts: Django setup, the machine they ran on, percentiles."""

import os
import platform
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"


def setup_django() -> None:
    # SIGTERM (`timeout`, a closed terminal) exits through the scripts' finally blocks,
    # so the benchmark's data is deleted even then.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def machine() -> dict[str, str]:
    """CPU model, cores, RAM and the PostgreSQL and pgvector versions, for the report."""
    from django.db import connection

    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "?")
    with open("/proc/meminfo", encoding="utf-8") as handle:
        memory_kb = next(int(line.split()[1]) for line in handle if line.startswith("MemTotal"))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('server_version'), extversion FROM pg_extension WHERE extname = 'vector'"
        )
        postgres, pgvector = cursor.fetchone()
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram_gb": f"{memory_kb / 2**20:.1f}",
        "postgres": postgres,
        "pgvector": pgvector,
        "python": platform.python_version(),
    }


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile, the same as bench_retrieval's."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def print_machine(info: dict[str, str]) -> None:
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM, "
        f"PostgreSQL {info['postgres']}, pgvector {info['pgvector']}, Python {info['python']}"
    )
