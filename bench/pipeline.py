"""The answer pipeline's own cost, and a cached answer end to end through the REST API.

    .venv/bin/python bench/pipeline.py [--rounds 5] [--requests 300] [--json]

1. Pipeline overhead without the LLM: `chatbot.pipeline.answer` over the demo shop's
   knowledge base (the files of knowledge/demo_data, ingested here with the local
   embedder) with 24 bilingual questions x `--rounds`, each asked by a new customer
   (no history), the answer cache off, and Gemini played by the loopback fake
   answering at once (zero latency). Reported: p50/p95 per stage (from the trace the
   pipeline keeps on every reply) and in total; "generate" is the fake's round trip
   through the real google-genai client.
2. Cache hits through the API: gunicorn (2 threads) serves the project on a loopback
   port, with the same Gemini fake; after a few questions have been answered,
   `--requests` POST /api/v1/messages with the same questions (normalised exact hits,
   from Redis) and with reworded ones (semantic hits: query embedding + pgvector),
   timed at the client, sequentially.

Everything created (knowledge base, bot, key, conversations, ledger rows) is deleted
at the end.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, machine, percentile, print_machine, setup_django

setup_django()

import requests  # noqa: E402
from demo_stack import DEMO_QUESTIONS, delete_run, free_port, ingest_demo_documents, wait_until_serving  # noqa: E402
from django.conf import settings  # noqa: E402

from chatbot.api_keys import api_key_create  # noqa: E402
from chatbot.llm import gemini as chat_gemini  # noqa: E402
from chatbot.models import Bot  # noqa: E402
from chatbot.pipeline import Inbound, answer  # noqa: E402
from knowledge.models import KnowledgeBase  # noqa: E402
from tests.fakes.gemini_server import GeminiServer  # noqa: E402

REWORDED = [
    ("What time does the store open?", "When does the store open?"),
    ("How much does delivery cost?", "What does delivery cost?"),
    ("Cửa hàng mở cửa lúc mấy giờ?", "Mấy giờ cửa hàng mở cửa?"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()

    results: dict = {}
    run = f"bench-pipeline-{int(time.time() * 1000)}"
    knowledge_base = KnowledgeBase.objects.create(name=run, embedding_model="local-e5-small")
    bot = None
    try:
        results["ingest_seconds"] = ingest_demo_documents(knowledge_base)
        bot = Bot.objects.create(
            name=run, slug=run, knowledge_base=knowledge_base, cache_enabled=False, provider_order=["gemini"]
        )
        with GeminiServer() as server:
            settings.GEMINI_BASE_URL = server.url
            settings.GEMINI_API_KEY = server.api_key
            chat_gemini.reset_clients()
            results["overhead"] = overhead(bot, options.rounds, run)
            results["api_cache_hit"] = api_cache_hits(bot, options.requests, run, gemini=server)
    finally:
        delete_run(knowledge_base, bot)
    results["machine"] = machine()
    report(results)
    if options.json:
        print(json.dumps(results))


def overhead(bot: Bot, rounds: int, run: str) -> dict:
    for number, question in enumerate(DEMO_QUESTIONS[:4]):  # warm up: models loaded, connections open
        answer(Inbound(bot=bot, channel="api", user_id=f"{run}-warm-{number}", text=question))
    stages: dict[str, list[float]] = {}
    totals, outcomes = [], {}
    for round_ in range(rounds):
        for number, question in enumerate(DEMO_QUESTIONS):
            started = time.perf_counter()
            result = answer(
                Inbound(bot=bot, channel="api", user_id=f"{run}-{round_}-{number}", text=question)
            )
            totals.append((time.perf_counter() - started) * 1000)
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
            for stage, ms in result.trace["stages_ms"].items():
                stages.setdefault(stage, []).append(ms)
    summary = {
        stage: {"p50": round(statistics.median(values), 2), "p95": round(percentile(values, 0.95), 2)}
        for stage, values in stages.items()
    }
    without_llm = [
        total - generate
        for total, generate in zip(totals, stages.get("generate", [0.0] * len(totals)), strict=False)
    ]
    summary["total"] = {"p50": round(statistics.median(totals), 2), "p95": round(percentile(totals, 0.95), 2)}
    summary["total_without_generate"] = {
        "p50": round(statistics.median(without_llm), 2),
        "p95": round(percentile(without_llm, 0.95), 2),
    }
    return {"answers": len(totals), "outcomes": outcomes, "stages_ms": summary}


def api_cache_hits(bot: Bot, requests_: int, run: str, *, gemini: GeminiServer) -> dict:
    bot.cache_enabled = True
    bot.save()
    _, token = api_key_create(bot=bot, name=run)
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "GEMINI_BASE_URL": gemini.url,
        "GEMINI_API_KEY": gemini.api_key,
        "NO_PROXY": "127.0.0.1,localhost",
        "API_RATE_LIMIT_PER_KEY_PER_MINUTE": "1000000",
        "API_RATE_LIMIT_PER_IP_PER_MINUTE": "1000000",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--threads", "2", "--worker-class", "gthread", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        url = f"http://127.0.0.1:{port}/api/v1/messages"
        wait_until_serving(port)

        def post(text: str, user: str) -> dict:
            response = session.post(url, json={"user_id": user, "text": text}, timeout=60)
            response.raise_for_status()
            return response.json()

        for original, _ in REWORDED:  # the first answers, from the Gemini fake, stored in the cache
            post(original, f"{run}-seed")
        exact, semantic, hits = [], [], {"exact": 0, "semantic": 0}
        for number in range(requests_):
            original, reworded = REWORDED[number % len(REWORDED)]
            for text, times, kind in (
                (original.lower() + " ", exact, "exact"),
                (reworded, semantic, "semantic"),
            ):
                started = time.perf_counter()
                body = post(text, f"{run}-{kind}-{number}")
                times.append((time.perf_counter() - started) * 1000)
                hits[kind] += bool(body["message"]["cache_hit"])
        return {
            "requests_each": requests_,
            "exact": {"p50": round(statistics.median(exact), 2), "p95": round(percentile(exact, 0.95), 2)},
            "semantic": {
                "p50": round(statistics.median(semantic), 2),
                "p95": round(percentile(semantic, 0.95), 2),
            },
            "hit_rate": {kind: round(count / requests_, 3) for kind, count in hits.items()},
        }
    finally:
        server.terminate()
        server.wait(timeout=20)


def report(results: dict) -> None:
    print_machine(results["machine"])
    overhead_ = results["overhead"]
    print(f"pipeline, {overhead_['answers']} answers, Gemini fake at zero latency, cache off")
    print(f"  outcomes: {overhead_['outcomes']}")
    for stage, values in overhead_["stages_ms"].items():
        print(f"  {stage:<24} p50 {values['p50']:>8.2f} ms   p95 {values['p95']:>8.2f} ms")
    api = results["api_cache_hit"]
    print(f"API cache hits, {api['requests_each']} requests each, hit rate {api['hit_rate']}")
    for kind in ("exact", "semantic"):
        print(f"  {kind:<24} p50 {api[kind]['p50']:>8.2f} ms   p95 {api[kind]['p95']:>8.2f} ms")


if __name__ == "__main__":
    Path(ROOT / "var").mkdir(exist_ok=True)
    main()
