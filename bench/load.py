"""Many concurrent customers on the REST API under gunicorn, with Gemini answering after 800 ms.

    .venv/bin/python bench/load.py [--users 500] [--duration 120] [--interval 10] [--latency 0.8]
        [--workers 4] [--threads 16] [--conn-max-age 60] [--stream] [--cache]
        [--embedder gemini|local] [--json]

The demo shop's documents (knowledge/demo_data) are ingested into a fresh knowledge
base through the real pipeline; a bench bot answers from it with Gemini only. Gemini
is the loopback fake in a process of its own, answering every chat request after
`--latency` seconds (embeddings at once). gunicorn serves the project as `manage.py
serve` does (gthread workers), pointed at the fake by GEMINI_BASE_URL/GEMINI_API_KEY,
with the API rate limits raised out of the way (their Redis check still runs).

Each user is an asyncio task with its own user_id (its own conversation, so history
grows as in real chats), asking POST /api/v1/messages a question drawn from bilingual
templates about the shop every `--interval` seconds +-20 % (the next only after the
answer), first at a random moment of the first interval: 500 users offer 50 requests
a second. They share one httpx2 pool of keep-alive connections, as a shop backend
relaying its customers would. `--stream` asks for server-sent events and also times
the first delta. The answer cache is off, so every answer takes the LLM path; with
`--cache` it is on and the ~400 template questions repeat, so the hit share grows
during the run (it is reported).

Reported: requests, errors (non-2xx by status and code, transport errors by class),
answer outcomes, latency at the client p50/p95/p99/max, throughput achieved against
offered, per-stage timings from each answer's trace (Message.details) and the time
spent outside the pipeline (queueing for a gunicorn thread, auth, rate limit, HTTP),
peak and final RSS per process (gunicorn master and workers, this load client, the
Gemini fake, the embedded PostgreSQL and Redis), CPU seconds per process group,
PostgreSQL connections, the event loop's lag (a busy client inflates latencies) and
the machine. Everything created is deleted at the end.
"""

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from urllib.parse import urlsplit

from common import ROOT, machine, percentile, print_machine, setup_django

setup_django()

import httpx2  # noqa: E402
from demo_stack import delete_run, free_port, ingest_demo_documents, wait_until_serving  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection, connections  # noqa: E402

from chatbot.api_keys import api_key_create  # noqa: E402
from chatbot.llm import gemini as chat_gemini  # noqa: E402
from chatbot.models import Bot  # noqa: E402
from conversations.models import Message  # noqa: E402
from knowledge.models import KnowledgeBase  # noqa: E402
from tests.fakes.gemini_server import GeminiServer  # noqa: E402

EMBEDDERS = {"gemini": "gemini-embedding-001-768", "local": "local-e5-small"}
JITTER = 0.2
SAMPLE_SECONDS = 2.0
CLIENT_TIMEOUT_SECONDS = 60.0  # gunicorn's --timeout in serve.py
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Slots make thousands of distinct questions, in the shop's own terms.
SLOTS = {
    "district": ["Quận 1", "Quận 3", "Quận 7", "Thủ Đức", "Bình Thạnh", "Hoàn Kiếm", "Hải Châu", "Cần Thơ"],
    "district_en": ["District 1", "District 3", "District 7", "Thu Duc", "Binh Thanh", "Da Nang"],
    "day": ["thứ Hai", "thứ Bảy", "Chủ nhật", "ngày lễ", "mùng 2 Tết", "cuối tuần"],
    "day_en": ["Monday", "Saturday", "Sunday", "a public holiday", "the second day of Tet", "weekends"],
    "product": ["áo thun cotton", "giày thể thao", "túi xách da", "nồi cơm điện", "quần jean", "ví nam"],
    "product_en": ["cotton T-shirt", "running shoes", "leather handbag", "rice cooker", "jeans", "wallet"],
    "amount": ["200.000đ", "350.000đ", "480.000đ", "650.000đ", "1 triệu"],
    "amount_en": ["200,000 VND", "350,000 VND", "480,000 VND", "650,000 VND", "1 million VND"],
    "pay": ["thẻ Visa", "Momo", "ZaloPay", "chuyển khoản", "tiền mặt khi nhận hàng"],
    "pay_en": ["a Visa card", "Momo", "ZaloPay", "bank transfer", "cash on delivery"],
    "days": ["3", "7", "15", "25", "40"],
}
TEMPLATES = [
    "Shop có giao hàng đến {district} vào {day} không?",
    "Phí giao hàng cho đơn {amount} đến {district} là bao nhiêu?",
    "Mua {product} được {days} ngày rồi thì còn đổi trả được không?",
    "{product} có được bảo hành không, bảo hành bao lâu?",
    "Mua {product} thanh toán bằng {pay} được không?",
    "Cửa hàng ở {district} mở cửa mấy giờ vào {day}?",
    "Thành viên mua {product} có được giảm giá không?",
    "Giao hàng nhanh 2 giờ có áp dụng cho {district} không?",
    "Do you deliver to {district_en} on {day_en}?",
    "How much is delivery for a {amount_en} order to {district_en}?",
    "Can I still return {product_en} bought {days} days ago?",
    "Is there a warranty on the {product_en}, and for how long?",
    "Can I pay for the {product_en} with {pay_en}?",
    "What are the opening hours of the {district_en} store on {day_en}?",
    "Do members get a discount on the {product_en}?",
    "Is two-hour express delivery available in {district_en}?",
]


def question_pool() -> list[str]:
    pool = []
    for template in TEMPLATES:
        names = [name for name in SLOTS if "{" + name + "}" in template]
        for values in product(*(SLOTS[name] for name in names)):
            pool.append(template.format(**dict(zip(names, values, strict=True))))
    return pool


@dataclass
class Result:
    started: float  # seconds since the load began
    finished: float
    kind: str  # "ok", or the error: "http 503 internal_error", "ReadTimeout", "stream error ..."
    total_ms: float
    first_delta_ms: float | None = None
    outcome: str = ""
    cache_hit: bool = False
    message_id: int | None = None


@dataclass
class Samples:
    """What the sampler saw: peak and last RSS per process, CPU ticks, DB connections, loop lag."""

    rss_peak_kb: dict[str, int] = field(default_factory=dict)
    rss_last_kb: dict[str, int] = field(default_factory=dict)
    private_kb: dict[str, int] = field(default_factory=dict)
    ticks_first: dict[int, int] = field(default_factory=dict)
    ticks_last: dict[int, int] = field(default_factory=dict)
    group_of: dict[int, str] = field(default_factory=dict)
    db_connections: list[int] = field(default_factory=list)
    loop_lag_ms: list[float] = field(default_factory=list)
    machine_busy: list[float] = field(default_factory=list)
    gunicorn_workers_seen: set[int] = field(default_factory=set)


def main() -> None:
    for name in ("httpx", "httpx2"):  # one line per request otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between a user's questions")
    parser.add_argument("--latency", type=float, default=0.8, help="Gemini's seconds to first byte")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=16, help="gunicorn threads per worker")
    parser.add_argument(
        "--conn-max-age", type=int, default=60, help="DATABASE_CONN_MAX_AGE for gunicorn (0: per request)"
    )
    parser.add_argument("--stream", action="store_true", help="server-sent events")
    parser.add_argument("--cache", action="store_true", help="keep the answer cache on")
    parser.add_argument("--embedder", choices=sorted(EMBEDDERS), default="gemini")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()

    run = f"bench-load-{int(time.time() * 1000)}"
    knowledge_base = KnowledgeBase.objects.create(name=run, embedding_model=EMBEDDERS[options.embedder])
    bot = None
    gemini = GeminiProcess(options.latency)
    results: dict = {"options": vars(options)}
    try:
        gemini.start()
        settings.GEMINI_BASE_URL, settings.GEMINI_API_KEY = gemini.url, gemini.api_key
        chat_gemini.reset_clients()
        ingest_demo_documents(knowledge_base)
        bot = Bot.objects.create(
            name=run,
            slug=run,
            knowledge_base=knowledge_base,
            cache_enabled=options.cache,
            provider_order=["gemini"],
            # The fake's vectors are hashed bags of words, not meanings: without a floor of
            # 0 some questions would get "don't know" without reaching the model.
            min_relevance=0.0 if options.embedder == "gemini" else None,
        )
        _, token = api_key_create(bot=bot, name=run)
        results.update(serve_and_load(options, token, run, gemini))
        results["server_side"] = server_side(results.pop("message_ids"), results.pop("client_ms"))
        results["gemini_calls"] = gemini.stop()
    finally:
        gemini.stop()
        delete_run(knowledge_base, bot)
    results["machine"] = machine()
    report(results)
    if options.json:
        print(json.dumps(results))


class GeminiProcess:
    """The Gemini fake in a process of its own, so its work does not share the load client's GIL."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.url = self.api_key = ""
        self.pid = 0
        self._process: multiprocessing.Process | None = None
        self._pipe = None

    def start(self) -> None:
        connections.close_all()  # a forked child must not share the parent's database socket
        context = multiprocessing.get_context("fork")
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(target=_serve_gemini, args=(self.latency, child_end), daemon=True)
        self._process.start()
        self.url, self.api_key = self._pipe.recv()
        self.pid = self._process.pid

    def stop(self) -> dict[str, int]:
        """Stop the fake; the number of requests it answered by method."""
        if self._process is None:
            return {}
        counts: dict[str, int] = {}
        try:
            self._pipe.send("stop")
            if self._pipe.poll(10):
                counts = self._pipe.recv()
        except (BrokenPipeError, EOFError, OSError):
            pass
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
        self._process = None
        return counts


def _serve_gemini(latency: float, pipe) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it, after gunicorn
    counts: Counter[str] = Counter()
    with GeminiServer(chat_latency=latency) as server:
        pipe.send((server.url, server.api_key))
        # Recorded requests (prompts included) would add up to hundreds of MB: count and drop them.
        while True:
            stop = pipe.poll(1.0)
            with server._lock:  # the lock the handlers record under: no request is missed
                recorded, server.requests = server.requests, []
            counts.update(request.path.rsplit(":", 1)[-1] for request in recorded)
            if stop:
                break
    pipe.send(dict(counts))


def serve_and_load(options: argparse.Namespace, token: str, run: str, gemini: GeminiProcess) -> dict:
    port = free_port()
    gunicorn_args = [
        "--workers", str(options.workers), "--worker-class", "gthread", "--threads", str(options.threads),
        "--graceful-timeout", "10", "--timeout", "60",
    ]  # fmt: skip
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "GEMINI_BASE_URL": gemini.url,
        "GEMINI_API_KEY": gemini.api_key,
        "NO_PROXY": "127.0.0.1,localhost",
        "API_RATE_LIMIT_PER_KEY_PER_MINUTE": "1000000",
        "API_RATE_LIMIT_PER_IP_PER_MINUTE": "1000000",
        "DATABASE_CONN_MAX_AGE": str(options.conn_max_age),
    }
    # gunicorn's own output goes to a file rather than over the report.
    log_path = ROOT / "bench" / "results" / "load-gunicorn.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
             *gunicorn_args, "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until_serving(port)
        outcome = asyncio.run(
            load(options, url=f"http://127.0.0.1:{port}/api/v1/messages", token=token, run=run,
                 gunicorn_pid=server.pid, gemini_pid=gemini.pid)
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    outcome["gunicorn"] = " ".join(gunicorn_args) + f" (DATABASE_CONN_MAX_AGE={options.conn_max_age})"
    outcome["gunicorn_log"] = str(log_path.relative_to(ROOT))
    return outcome


async def load(
    options: argparse.Namespace, *, url: str, token: str, run: str, gunicorn_pid: int, gemini_pid: int
) -> dict:
    pool = question_pool()
    limits = httpx2.Limits(
        max_connections=options.users,
        max_keepalive_connections=options.users,
        # Under gunicorn's 2 s keep-alive: never reuse a connection the server is closing.
        keepalive_expiry=1.5,
    )
    async with httpx2.AsyncClient(
        limits=limits,
        timeout=CLIENT_TIMEOUT_SECONDS,
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
    ) as client:
        ask = Asker(client, url, stream=options.stream)
        # Warm up: every gunicorn thread opens its database connection and Gemini client.
        warm = options.workers * options.threads
        await asyncio.gather(*(ask(f"{run}-warm-{number}", pool[number]) for number in range(warm)))

        loop = asyncio.get_running_loop()
        begin = loop.time()
        deadline = begin + options.duration
        samples = Samples()
        results: list[Result] = []
        stop_sampling = asyncio.Event()
        sampler = asyncio.create_task(
            sample(samples, stop_sampling, gunicorn_pid=gunicorn_pid, gemini_pid=gemini_pid)
        )

        async def user(number: int) -> None:
            rng = random.Random(options.seed * 1_000_003 + number)
            next_at = begin + rng.uniform(0, options.interval)
            while next_at < deadline:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                sent = loop.time()
                result = await ask(f"{run}-user-{number}", rng.choice(pool))
                result.started, result.finished = sent - begin, loop.time() - begin
                results.append(result)
                next_at = max(sent + options.interval * rng.uniform(1 - JITTER, 1 + JITTER), loop.time())

        await asyncio.gather(*(user(number) for number in range(options.users)))
        elapsed = loop.time() - begin
        stop_sampling.set()
        await sampler
    return summarise(results, samples, options, elapsed)


class Asker:
    """One question through the API, timed at the client; any failure becomes the result's kind."""

    def __init__(self, client: httpx2.AsyncClient, url: str, *, stream: bool) -> None:
        self.client, self.url, self.stream = client, url, stream

    async def __call__(self, user_id: str, text: str) -> Result:
        started = time.perf_counter()
        result = Result(0.0, 0.0, "ok", 0.0)
        try:
            if self.stream:
                await self._streamed(user_id, text, started, result)
            else:
                response = await self.client.post(self.url, json={"user_id": user_id, "text": text})
                if response.status_code == 200:
                    self._answered(response.json(), result)
                else:
                    result.kind = _http_error(response.status_code, response.content)
        except httpx2.HTTPError as error:
            result.kind = type(error).__name__
        except ValueError as error:  # a 200 whose body is not the documented JSON
            result.kind = f"bad body: {type(error).__name__}"
        result.total_ms = (time.perf_counter() - started) * 1000
        return result

    async def _streamed(self, user_id: str, text: str, started: float, result: Result) -> None:
        body = {"user_id": user_id, "text": text, "stream": True}
        async with self.client.stream("POST", self.url, json=body) as response:
            if response.status_code != 200:
                result.kind = _http_error(response.status_code, await response.aread())
                return
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: "):
                    if event == "delta" and result.first_delta_ms is None:
                        result.first_delta_ms = (time.perf_counter() - started) * 1000
                    elif event == "done":
                        self._answered(json.loads(line[len("data: ") :]), result)
                        return
                    elif event == "error":
                        code = json.loads(line[len("data: ") :]).get("error", {}).get("code", "")
                        result.kind = f"stream error {code}"
                        return
            result.kind = "stream ended without done"

    @staticmethod
    def _answered(body: dict, result: Result) -> None:
        message = body.get("message") or {}
        result.outcome = message.get("outcome", "") or "no message (202)"
        result.cache_hit = bool(message.get("cache_hit"))
        result.message_id = message.get("id")


def _http_error(status: int, content: bytes) -> str:
    try:
        code = json.loads(content).get("error", {}).get("code", "")
    except (ValueError, AttributeError):
        code = "non-JSON body"
    return f"http {status} {code}".strip()


async def sample(samples: Samples, stop: asyncio.Event, *, gunicorn_pid: int, gemini_pid: int) -> None:
    loop = asyncio.get_running_loop()
    postmaster = _embedded_postgres_pid()
    redis = _embedded_redis_pid()
    busy_before = _machine_ticks()
    while True:
        # First at once, last after the load: CPU is counted over all of it.
        backends, count = await asyncio.to_thread(_our_backends)
        samples.db_connections.append(count)
        processes = {"load client": os.getpid(), "gemini fake": gemini_pid, "gunicorn master": gunicorn_pid}
        for number, pid in enumerate(sorted(_children(gunicorn_pid))):
            processes[f"gunicorn worker {number + 1}"] = pid
            samples.gunicorn_workers_seen.add(pid)
        if postmaster:
            processes["postgres postmaster"] = postmaster
        if redis:
            processes["redis"] = redis
        for name, pid in processes.items():
            _record(samples, name, pid, name.rsplit(" ", 1)[0] if name.startswith("gunicorn") else name)
        for pid in backends:  # PostgreSQL's processes serving our database's connections
            _record(samples, None, pid, "postgres backends")
        private = [_status_kb(pid, "RssAnon") for pid in backends]
        samples.private_kb["postgres backends"] = max(
            samples.private_kb.get("postgres backends", 0), sum(value for value in private if value)
        )
        if stop.is_set():
            return
        expected = loop.time() + SAMPLE_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)
        if not stop.is_set():  # a wait cut short by the stop says nothing about lag
            samples.loop_lag_ms.append(max(0.0, (loop.time() - expected) * 1000))
        busy_now = _machine_ticks()
        total = busy_now[1] - busy_before[1]
        if total:
            samples.machine_busy.append((busy_now[0] - busy_before[0]) / total)
        busy_before = busy_now


def _record(samples: Samples, name: str | None, pid: int, group: str) -> None:
    if name is not None:
        rss = _status_kb(pid, "VmRSS")
        if rss is not None:
            samples.rss_last_kb[name] = rss
            samples.rss_peak_kb[name] = max(samples.rss_peak_kb.get(name, 0), rss)
    ticks = _cpu_ticks(pid)
    if ticks is not None:
        samples.ticks_first.setdefault(pid, ticks)
        samples.ticks_last[pid] = ticks
        samples.group_of[pid] = group


def _our_backends() -> tuple[list[int], int]:
    """PIDs of the backends connected to this database, and how many there are."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        pids = [pid for (pid,) in cursor.fetchall()]
    connection.close()  # the executor's threads would each keep one open and be counted
    return pids, len(pids)


def _embedded_postgres_pid() -> int | None:
    pgdata = Path(settings.VAR_DIR) / "pgdata"
    if str(pgdata) not in settings.DATABASE_URL:
        return None  # DATABASE_URL names a server elsewhere
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _embedded_redis_pid() -> int | None:
    url = urlsplit(settings.REDIS_URL)
    if url.scheme != "unix":
        return None  # a server elsewhere
    # Redis retitles itself "redis-server unixsocket:<path>".
    socket_path = url.path
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if socket_path in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    return int(entry.name)
            except OSError:
                continue
    return None


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The command name may hold spaces and parentheses: split after the last ")".
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def _status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    with open("/proc/stat", encoding="utf-8") as handle:
        values = [int(value) for value in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def summarise(results: list[Result], samples: Samples, options: argparse.Namespace, elapsed: float) -> dict:
    ok = [result for result in results if result.kind == "ok"]
    errors = Counter(result.kind for result in results if result.kind != "ok")
    completed_in_window = sum(1 for result in ok if result.finished <= options.duration)
    cpu: Counter[str] = Counter()
    for pid, last in samples.ticks_last.items():
        cpu[samples.group_of[pid]] += (last - samples.ticks_first[pid]) / CLOCK_TICKS
    summary = {
        "requests": len(results),
        "ok": len(ok),
        "errors": dict(errors),
        "outcomes": dict(Counter(result.outcome for result in ok)),
        "cache_hit_share": round(sum(result.cache_hit for result in ok) / len(ok), 4) if ok else 0.0,
        "latency_ms": _spread([result.total_ms for result in ok]),
        "offered_per_s": round(options.users / options.interval, 1),
        "achieved_per_s": round(completed_in_window / options.duration, 1),
        "elapsed_s": round(elapsed, 1),
        "rss_mb": {
            name: {"peak": round(peak / 1024, 1), "last": round(samples.rss_last_kb[name] / 1024, 1)}
            for name, peak in samples.rss_peak_kb.items()
        },
        "postgres_backends_private_mb_peak": round(samples.private_kb.get("postgres backends", 0) / 1024, 1),
        "cpu_seconds": {group: round(seconds, 1) for group, seconds in sorted(cpu.items())},
        # What an answer costs in CPU: against the cores, it says which rate the machine can carry.
        "cpu_ms_per_answer": {
            group: round(seconds * 1000 / len(ok), 1) for group, seconds in sorted(cpu.items()) if ok
        },
        "db_connections": {
            "peak": max(samples.db_connections, default=0),
            "median": statistics.median(samples.db_connections) if samples.db_connections else 0,
        },
        "machine_busy": _spread([fraction * 100 for fraction in samples.machine_busy], digits=1),
        "loop_lag_ms": _spread(samples.loop_lag_ms),
        "gunicorn_workers_seen": len(samples.gunicorn_workers_seen),
        "message_ids": [result.message_id for result in ok if result.message_id is not None],
        "client_ms": {result.message_id: result.total_ms for result in ok if result.message_id is not None},
    }
    if options.stream:
        summary["first_delta_ms"] = _spread([r.first_delta_ms for r in ok if r.first_delta_ms is not None])
    return summary


def server_side(message_ids: list[int], client_ms: dict[int, float]) -> dict:
    """Per-stage timings from each answer's trace, and the client's time outside the pipeline."""
    stages: dict[str, list[float]] = {}
    outside, gemini_calls = [], []
    for message_id, details in Message.objects.filter(pk__in=message_ids).values_list("pk", "details"):
        stages_ms = (details or {}).get("stages_ms") or {}
        for stage, ms in stages_ms.items():
            stages.setdefault(stage, []).append(ms)
        outside.append(client_ms[message_id] - sum(stages_ms.values()))
        gemini_calls += [
            attempt["latency_ms"]
            for attempt in (details or {}).get("attempts", [])
            if attempt.get("provider") == "gemini" and attempt.get("latency_ms") is not None
        ]
    summary = {stage: _spread(values) for stage, values in stages.items()}
    summary["gemini call (attempt latency)"] = _spread(gemini_calls)
    summary["outside the pipeline"] = _spread(outside)
    return summary


def _spread(values: list[float], digits: int = 1) -> dict:
    if not values:
        return {}
    return {
        "n": len(values),
        "p50": round(statistics.median(values), digits),
        "p95": round(percentile(values, 0.95), digits),
        "p99": round(percentile(values, 0.99), digits),
        "max": round(max(values), digits),
    }


def report(results: dict) -> None:
    print_machine(results["machine"])
    options = results["options"]
    if "latency_ms" not in results:
        return
    print(
        f"{options['users']} users, one question every ~{options['interval']:g} s each, "
        f"{options['duration']:g} s; Gemini fake at {options['latency'] * 1000:.0f} ms; "
        f"{'SSE streaming' if options['stream'] else 'blocking'}; answer cache "
        f"{'on' if options['cache'] else 'off'}; {options['embedder']} embeddings"
    )
    print(f"gunicorn: {results['gunicorn']}; its output: {results['gunicorn_log']}")
    print(
        f"requests {results['requests']}, ok {results['ok']}, errors {sum(results['errors'].values())} "
        f"{results['errors'] or ''}"
    )
    print(f"outcomes {results['outcomes']}, cache-hit share {results['cache_hit_share']:.1%}")
    print(
        f"throughput: offered {results['offered_per_s']}/s, achieved {results['achieved_per_s']}/s "
        f"(answers completed within the {options['duration']:g} s); the run took {results['elapsed_s']} s"
    )
    _print_spread("latency at the client (ms)", results["latency_ms"])
    if "first_delta_ms" in results:
        _print_spread("first delta at the client (ms)", results["first_delta_ms"])
    print("server side, from each answer's trace (ms):")
    for stage, spread in results["server_side"].items():
        _print_spread(f"  {stage}", spread)
    print(f"Gemini fake answered {results['gemini_calls']}")
    print("RSS per process (MB, peak / last):")
    for name, rss in results["rss_mb"].items():
        print(f"  {name:<24} {rss['peak']:>7.1f} / {rss['last']:>7.1f}")
    print(
        f"  postgres backends of this database: private memory (RssAnon) summed, peak "
        f"{results['postgres_backends_private_mb_peak']} MB; connections peak "
        f"{results['db_connections']['peak']}, median {results['db_connections']['median']}"
    )
    seen, started = results["gunicorn_workers_seen"], options["workers"]
    print(f"gunicorn worker processes seen: {seen} ({started} started; more means a worker was restarted)")
    print(f"CPU seconds during the load: {results['cpu_seconds']}")
    print(f"CPU ms per answer: {results['cpu_ms_per_answer']}")
    _print_spread("machine CPU busy (% of all cores)", results["machine_busy"])
    _print_spread("load client event-loop lag (ms)", results["loop_lag_ms"])


def _print_spread(label: str, spread: dict) -> None:
    if not spread:
        print(f"{label}: none")
        return
    print(
        f"{label:<40} p50 {spread['p50']:>8} p95 {spread['p95']:>8} p99 {spread['p99']:>8} "
        f"max {spread['max']:>8}  (n={spread['n']})"
    )


if __name__ == "__main__":
    Path(ROOT / "var").mkdir(exist_ok=True)
    main()
