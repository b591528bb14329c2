"""The Zalo webhook under load: how fast it acknowledges, and how long until the reply reaches Zalo.

    .venv/bin/python bench/zalo_webhook.py [--webhooks 1000] [--concurrency 16] [--rate 25] [--seconds 40]
        [--replies 48] [--json]

gunicorn serves the project on a loopback port and one Celery worker (queue chat,
2 processes) answers, both on a Redis database of their own (so a running `make run`
worker never takes these tasks). The loopback Zalo of the test suite receives the
replies; Gemini is the loopback fake answering at once. The bot answers from the
demo shop's knowledge base (knowledge/demo_data, ingested here with the local embedder).

1. Acknowledgement alone: the worker stops taking tasks (Celery remote control) and
   `--webhooks` signed `user_send_text` events (24 bilingual questions, each from its own
   Zalo user) are posted by `--concurrency` threads as fast as gunicorn takes them.
   Reported: acknowledgement latency p50/p95/p99 at the client, requests per second;
   then the worker takes tasks again and drains the backlog (reported: how long).
2. Acknowledgement while answering: `--rate` webhooks a second for `--seconds` (an open
   loop: latency counts from each request's scheduled time) while the worker answers on
   the same cores. Reported: acknowledgement latency, and webhook -> reply received at
   the fake Zalo for those messages (when the rate exceeds what the worker answers per
   second, this grows with the queue). The answer cache is on, as in production, so
   repeated questions are mostly cache hits.
3. One at a time: `--replies` questions, each posted once the previous reply arrived,
   with the answer cache off (full pipeline: embedding, retrieval, Gemini fake, outbox
   send). Reported: webhook -> reply received at the fake Zalo, p50/p95.

Everything created (knowledge base, bot, Zalo account, events, outbox, conversations,
ledger rows) is deleted at the end, and the Redis database used is emptied.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from common import ROOT, machine, percentile, print_machine, setup_django

setup_django()

import httpx2 as httpx  # noqa: E402
import redis  # noqa: E402
from celery import Celery  # noqa: E402
from demo_stack import DEMO_QUESTIONS, delete_run, free_port, ingest_demo_documents, wait_until_serving  # noqa: E402
from django.conf import settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from chatbot.models import Bot, ZaloAccount  # noqa: E402
from config.env import celery_broker_url, redis_db, redis_url_with_db  # noqa: E402
from knowledge.models import KnowledgeBase  # noqa: E402
from tests.fakes.gemini_server import GeminiServer  # noqa: E402
from tests.fakes.zalo_server import ZaloServer  # noqa: E402

REDIS_DB_OFFSET = 12  # after the test suite's databases (base + 1..8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webhooks", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=25.0, help="webhooks a second offered in part 2")
    parser.add_argument("--seconds", type=float, default=40.0, help="how long part 2 offers them")
    parser.add_argument("--replies", type=int, default=48)
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--gunicorn-threads", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()

    run = f"bench-zalo-{int(time.time() * 1000)}"
    redis_url = redis_url_with_db(settings.REDIS_URL, redis_db(settings.REDIS_URL) + REDIS_DB_OFFSET)
    results: dict = {"options": vars(options)}
    knowledge_base = KnowledgeBase.objects.create(name=run, embedding_model="local-e5-small")
    bot = None
    processes: list[subprocess.Popen] = []
    try:
        results["ingest_seconds"] = ingest_demo_documents(knowledge_base)
        bot = Bot.objects.create(name=run, slug=run, knowledge_base=knowledge_base, provider_order=["gemini"])
        with GeminiServer() as gemini, ZaloServer() as zalo:
            ZaloAccount.objects.create(
                bot=bot, app_id=zalo.app_id, app_secret=zalo.app_secret, oa_secret_key=zalo.oa_secret_key,
                oa_id=zalo.oa_id, access_token=zalo.access_token, refresh_token=zalo.refresh_token,
                access_token_expires_at=timezone.now() + timedelta(seconds=zalo.access_ttl_s),
                refresh_token_issued_at=timezone.now(),
            )  # fmt: skip
            redis.Redis.from_url(redis_url).flushdb()
            env = {
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "REDIS_URL": redis_url,
                "ZALO_OPENAPI_URL": zalo.url,
                "ZALO_OAUTH_URL": zalo.url,
                "GEMINI_BASE_URL": gemini.url,
                "GEMINI_API_KEY": gemini.api_key,
                "NO_PROXY": "127.0.0.1,localhost",
            }
            port = free_port()
            processes.append(_start(
                ["gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers",
                 str(options.gunicorn_workers), "--threads", str(options.gunicorn_threads),
                 "--worker-class", "gthread", "--log-level", "warning"], env))  # fmt: skip
            processes.append(_start(
                ["celery", "-A", "config", "worker", "--queues", "chat", "--concurrency", "2",
                 "--loglevel", "WARNING", "--hostname", f"{run}@%h"], env))  # fmt: skip
            zalo.webhook_url = f"http://127.0.0.1:{port}/webhooks/zalo/{bot.slug}/"
            zalo.retry_schedule = ()  # a refused delivery is a result to report, not to retry
            wait_until_serving(port)
            warm_up(zalo, run, options.concurrency)
            worker = Worker(redis_url, f"{run}@{socket.gethostname()}")
            worker.pause()
            backlog = len(zalo.sent)
            results["ack_alone"] = burst(zalo, f"{run}-a", options.webhooks, options.concurrency)
            drain_started = time.perf_counter()
            worker.resume()
            zalo.wait_for_sends(backlog + options.webhooks, timeout=max(600, 2 * options.webhooks))
            results["ack_alone"]["backlog_drained_seconds"] = round(time.perf_counter() - drain_started, 1)
            results["ack_while_answering"] = burst(
                zalo,
                f"{run}-b",
                round(options.rate * options.seconds),
                options.concurrency,
                rate=options.rate,
                wait_for_replies=True,
            )
            bot.cache_enabled = False
            bot.save(update_fields=["cache_enabled"])
            results["one_at_a_time"] = one_at_a_time(zalo, run, options.replies)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        delete_run(knowledge_base, bot)
        redis.Redis.from_url(redis_url).flushdb()
    results["machine"] = machine()
    report(results)
    if options.json:
        print(json.dumps(results))


def warm_up(zalo: ZaloServer, run: str, concurrency: int) -> None:
    """Both worker processes load the embedding model; every gunicorn thread opens its connections."""
    before = len(zalo.sent)
    for number, question in enumerate(DEMO_QUESTIONS[:6]):
        zalo.user_sends_text(f"{run}-warm-{number}", question)
    burst(zalo, f"{run}-warm-burst", 4 * concurrency, concurrency)
    zalo.wait_for_sends(before + 6 + 4 * concurrency, timeout=300)


class Worker:
    """Pause and resume the benchmark's Celery worker (remote control over its broker)."""

    def __init__(self, redis_url: str, name: str) -> None:
        self.app = Celery("bench-control", broker=celery_broker_url(redis_url))
        self.name = name

    def pause(self) -> None:
        self._expect(self.app.control.cancel_consumer("chat", destination=[self.name], reply=True, timeout=5))

    def resume(self) -> None:
        self._expect(self.app.control.add_consumer("chat", destination=[self.name], reply=True, timeout=5))

    def _expect(self, replies: list) -> None:
        if not replies:
            raise RuntimeError(f"the Celery worker {self.name} did not answer a control command")


def burst(
    zalo: ZaloServer,
    prefix: str,
    webhooks: int,
    concurrency: int,
    *,
    rate: float | None = None,
    wait_for_replies: bool = False,
) -> dict:
    """Post `webhooks` signed events from `concurrency` threads: back to back (closed loop), or
    `rate` a second on a fixed schedule (open loop; latency counted from the scheduled time,
    so a stalled server is not hidden by requests that were sent late)."""
    deliveries = [
        zalo.user_sends_text(
            f"{prefix}-{number}", DEMO_QUESTIONS[number % len(DEMO_QUESTIONS)], deliver=False
        )
        for number in range(webhooks)
    ]  # built and signed before the clock starts
    posted_at: dict[str, float] = {}
    acks: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    local = threading.local()
    start = time.perf_counter() + 0.2

    def post(number: int) -> None:
        delivery = deliveries[number]
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(trust_env=False, timeout=10)
        if rate:
            due = start + number / rate
            time.sleep(max(0.0, due - time.perf_counter()))
        else:
            due = time.perf_counter()
        sent_at = time.time()
        try:
            response = client.post(zalo.webhook_url, content=delivery.body, headers=delivery.headers)
            status = str(response.status_code)
        except httpx.HTTPError as error:
            status = type(error).__name__
        elapsed = (time.perf_counter() - due) * 1000
        with lock:
            posted_at[delivery.payload["sender"]["id"]] = sent_at
            if status == "200":
                acks.append(elapsed)
            else:
                errors.append(status)

    before = len(zalo.sent)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(post, range(webhooks)))
    seconds = time.perf_counter() - start
    result = {
        "webhooks": webhooks,
        "concurrency": concurrency,
        "offered_per_second": rate,
        "errors": len(errors),
        "requests_per_second": round(len(acks) / seconds, 1),
        "ack_ms": _summary(acks, with_p99=True),
    }
    if wait_for_replies:
        zalo.wait_for_sends(before + len(acks), timeout=max(600, 2 * webhooks))
        result["all_replies_seconds"] = round(time.perf_counter() - start, 1)
        result["reply_ms"] = _summary(
            [
                (sent.sent_at - posted_at[sent.user_id]) * 1000
                for sent in zalo.sent
                if sent.user_id in posted_at
            ]
        )
    return result


def one_at_a_time(zalo: ZaloServer, run: str, count: int) -> dict:
    acks, replies = [], []
    for number in range(count):
        user = f"{run}-one-{number}"
        started = time.perf_counter()
        delivery = zalo.user_sends_text(user, DEMO_QUESTIONS[number % len(DEMO_QUESTIONS)])
        if not delivery.acked:
            raise RuntimeError(f"the webhook refused a delivery: {delivery.attempts}")
        acks.append(delivery.attempts[-1].latency * 1000)
        deadline = time.monotonic() + 120
        while not zalo.sends_to(user):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply to {user} within 120 s")
            time.sleep(0.002)
        replies.append((time.perf_counter() - started) * 1000)
    return {"messages": count, "ack_ms": _summary(acks), "reply_ms": _summary(replies)}


def _summary(values: list[float], *, with_p99: bool = False) -> dict:
    if not values:
        return {}
    summary = {"p50": round(statistics.median(values), 2), "p95": round(percentile(values, 0.95), 2)}
    if with_p99:
        summary["p99"] = round(percentile(values, 0.99), 2)
        summary["max"] = round(max(values), 2)
    return summary


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT, env=env)


def report(results: dict) -> None:
    print_machine(results["machine"])
    options = results["options"]
    print(
        f"gunicorn {options['gunicorn_workers']} workers x {options['gunicorn_threads']} threads, "
        f"Celery 2 processes (queue chat), Gemini fake at zero latency; all on this machine"
    )
    for key in ("ack_alone", "ack_while_answering"):
        part = results[key]
        ack = part["ack_ms"]
        if part["offered_per_second"]:
            title = f"{part['offered_per_second']:g}/s offered, worker answering (cache on)"
        else:
            title = f"back to back from {part['concurrency']} threads, worker paused"
        print(f"{part['webhooks']} webhooks, {title}: "
              f"{part['requests_per_second']} acknowledged/s, {part['errors']} errors")  # fmt: skip
        print(f"  acknowledged    p50 {ack['p50']:>8.2f} ms   p95 {ack['p95']:>8.2f} ms   "
              f"p99 {ack['p99']:>8.2f} ms   max {ack['max']:>8.2f} ms")  # fmt: skip
        if "backlog_drained_seconds" in part:
            print(
                f"  backlog answered and sent in {part['backlog_drained_seconds']} s once the worker resumed"
            )
        if "reply_ms" in part:
            reply = part["reply_ms"]
            print(f"  reply at Zalo   p50 {reply['p50']:>8.2f} ms   p95 {reply['p95']:>8.2f} ms   "
                  f"(the last of {part['webhooks']} after {part['all_replies_seconds']} s)")  # fmt: skip
    one = results["one_at_a_time"]
    ack, reply = one["ack_ms"], one["reply_ms"]
    print(f"{one['messages']} questions one at a time, answer cache off")
    print(f"  acknowledged    p50 {ack['p50']:>8.2f} ms   p95 {ack['p95']:>8.2f} ms")
    print(f"  reply at Zalo   p50 {reply['p50']:>8.2f} ms   p95 {reply['p95']:>8.2f} ms")


if __name__ == "__main__":
    Path(ROOT / "var").mkdir(exist_ok=True)
    main()
