"""Ingestion throughput through the real pipeline, with the local embedder and with Gemini.

    .venv/bin/python bench/ingestion.py [--latency 0.3] [--pages 100] [--json]

1. Chunks per second of `knowledge.ingest.pipeline.document_ingest` over the 96 XQuAD
   articles (48 English, 48 Vietnamese; each a pasted Markdown document of five
   paragraphs under its title), once with the local embedder and once with Gemini.
2. A PDF of `--pages` pages of English XQuAD prose (made here with fpdf2, one
   bookmark per article) from upload (`knowledge.services.document_create_from_upload`)
   to `ready` with Gemini, with the document's own per-stage timings.

Gemini is the loopback fake of tests/fakes/gemini_server.py, answering every request
after `--latency` seconds (default 0.3 s, a realistic batchEmbedContents round trip);
the pipeline sends up to 100 texts a request and 4 requests at a time. Each
document's title carries a run id, so its chunks are new text: nothing comes from
the embedding cache. Ingestion tasks run eagerly in this process, so no worker of
another process can claim the documents and nothing reaches the shared broker. The
knowledge bases, their stored files, their cache entries and usage rows are deleted
at the end.
"""

import argparse
import json
import logging
import os
import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

from common import EVAL, machine, print_machine, setup_django

setup_django()

from django.conf import settings  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from fpdf import FPDF  # noqa: E402

from billing.models import UsageEvent  # noqa: E402
from config.celery import app as celery_app  # noqa: E402
from knowledge import services  # noqa: E402
from knowledge.embedding import gemini, get_embedder  # noqa: E402
from knowledge.ingest.pipeline import REMOTE_EMBED_CONCURRENCY, document_ingest  # noqa: E402
from knowledge.ingest.split import count_tokens  # noqa: E402
from knowledge.models import Chunk, Document, EmbeddingCacheEntry, KnowledgeBase  # noqa: E402
from tests.fakes.gemini_server import GeminiServer  # noqa: E402

LOCAL = "local-e5-small"
GEMINI = "gemini-embedding-001-768"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
STAGES = ("extracting", "chunking", "embedding", "indexing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.3, help="Seconds the fake Gemini takes a request.")
    parser.add_argument("--pages", type=int, default=100, help="Pages of the PDF.")
    parser.add_argument("--json", action="store_true", help="End with one JSON line of the results.")
    options = parser.parse_args()

    celery_app.conf.task_always_eager = True
    # A line per eager task, per HTTP request and per font table would bury the report.
    for name in ("celery.app.trace", "httpx", "httpx2", "fontTools"):
        logging.getLogger(name).setLevel(logging.WARNING)
    run = f"{int(time.time() * 1000)}"
    articles = xquad_articles()
    # Load the local model and the chunker's tokenizer before the clock starts.
    get_embedder(LOCAL).embed_documents(["warm-up"])
    count_tokens("warm-up")
    results: dict = {"gemini_latency_s": options.latency, "remote_concurrency": REMOTE_EMBED_CONCURRENCY}
    knowledge_bases: list[KnowledgeBase] = []
    with loopback_gemini(options.latency):
        try:
            for model in (LOCAL, GEMINI):
                knowledge_base = KnowledgeBase.objects.create(
                    name=f"bench-ingestion-{model}-{run}", embedding_model=model
                )
                knowledge_bases.append(knowledge_base)
                results[model] = throughput(knowledge_base, articles, run)
            knowledge_base = KnowledgeBase.objects.create(
                name=f"bench-ingestion-pdf-{run}", embedding_model=GEMINI
            )
            knowledge_bases.append(knowledge_base)
            results["pdf"] = pdf_upload(knowledge_base, articles, options.pages, run)
        finally:
            for knowledge_base in knowledge_bases:
                cleanup(knowledge_base)
    results["machine"] = machine()
    report(results)
    if options.json:
        print(json.dumps(results))


@contextmanager
def loopback_gemini(latency: float) -> Iterator[GeminiServer]:
    """The fake Gemini API on 127.0.0.1; the settings point at it before the embedder is built."""
    for name in ("GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_API_KEY", "GEMINI_API_KEY"):
        os.environ.pop(name, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"  # never through a proxy
    with GeminiServer() as server:
        server.latency = latency
        settings.GEMINI_BASE_URL = server.url
        settings.GEMINI_API_KEY = server.api_key
        gemini.reset_clients()
        try:
            yield server
        finally:
            gemini.reset_clients()


def xquad_articles() -> list[tuple[str, list[str]]]:
    """(title, paragraphs) for each XQuAD article, English then Vietnamese."""
    articles = []
    for language in ("en", "vi"):
        data = json.loads((EVAL / "xquad" / f"xquad.{language}.json").read_text(encoding="utf-8"))["data"]
        for article in data:
            title = article["title"].replace("_", " ")
            articles.append(
                (f"{title} ({language})", [paragraph["context"] for paragraph in article["paragraphs"]])
            )
    return articles


def throughput(knowledge_base: KnowledgeBase, articles: list[tuple[str, list[str]]], run: str) -> dict:
    """Chunks per second of document_ingest over one document per article."""
    documents = [
        # Created directly, not through the service, so nothing is enqueued: we time the call.
        Document.objects.create(
            knowledge_base=knowledge_base,
            title=title,
            source=Document.Source.TEXT,
            text=f"# {title}, run {run}\n\n" + "\n\n".join(paragraphs),
            status=Document.Status.QUEUED,
        )
        for title, paragraphs in articles
    ]
    started = time.perf_counter()
    for document in documents:
        outcome = document_ingest(document_id=document.pk, version=document.version)
        if outcome.status != "ready":
            document.refresh_from_db()
            raise RuntimeError(f"{document.title} did not index: {document.error}")
    seconds = time.perf_counter() - started
    rows = list(
        Document.objects.filter(knowledge_base=knowledge_base).values(
            "chunk_count", "embedded_chunk_count", "stage_timings"
        )
    )
    chunks = sum(row["chunk_count"] for row in rows)
    return {
        "documents": len(rows),
        "chunks": chunks,
        "embedded": sum(row["embedded_chunk_count"] for row in rows),
        "seconds": round(seconds, 1),
        "chunks_per_second": round(chunks / seconds, 1),
        "stage_seconds": {
            stage: round(sum(row["stage_timings"].get(stage, 0.0) for row in rows), 1) for stage in STAGES
        },
        "median_chunks_per_document": statistics.median(row["chunk_count"] for row in rows),
    }


def pdf_upload(
    knowledge_base: KnowledgeBase, articles: list[tuple[str, list[str]]], pages: int, run: str
) -> dict:
    data = make_pdf([article for article in articles if article[0].endswith("(en)")], pages, run)
    started = time.perf_counter()
    # Eager tasks: the ingestion runs when the upload's transaction commits, inside this call.
    document = services.document_create_from_upload(
        knowledge_base=knowledge_base,
        uploaded=SimpleUploadedFile("employee-handbook.pdf", data, content_type="application/pdf"),
    )
    seconds = time.perf_counter() - started
    document.refresh_from_db()
    if document.status != Document.Status.READY:
        raise RuntimeError(f"the PDF did not index: {document.status} {document.error}")
    return {
        "pages": document.page_count,
        "bytes": len(data),
        "chunks": document.chunk_count,
        "embedded": document.embedded_chunk_count,
        "seconds_upload_to_ready": round(seconds, 1),
        "stage_seconds": document.stage_timings,
    }


def make_pdf(articles: list[tuple[str, list[str]]], pages: int, run: str) -> bytes:
    """`pages` pages of prose: each article under a bookmarked heading, cycling until full.

    Later cycles shuffle each article's paragraphs, so chunks (which pack neighbouring
    paragraphs) do not repeat and every one is embedded.
    """
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_font("DejaVu", "", FONT)
    pdf.add_font("DejaVu", "B", FONT_BOLD)
    pdf.set_title(f"Employee handbook (bench {run})")
    rng = random.Random(0)
    pdf.add_page()
    cycle = 0
    while True:
        for number, (title, paragraphs) in enumerate(articles, 1):
            order = list(paragraphs)
            if cycle:
                rng.shuffle(order)
            heading = f"{cycle * len(articles) + number}. {title.removesuffix(' (en)')}"
            if pdf.page_no() == pages and pdf.will_page_break(40):
                return bytes(pdf.output())
            pdf.set_font("DejaVu", "B", 14)
            pdf.start_section(heading)
            pdf.multi_cell(0, 8, heading)
            pdf.ln(2)
            pdf.set_font("DejaVu", "", 11)
            for paragraph in order:
                if pdf.page_no() == pages:  # stop before a paragraph spills onto one page more
                    lines = pdf.multi_cell(0, 5.5, paragraph, dry_run=True, output="LINES")
                    if pdf.will_page_break(len(lines) * 5.5):
                        return bytes(pdf.output())
                pdf.multi_cell(0, 5.5, paragraph)
                pdf.ln(3)
        cycle += 1


def cleanup(knowledge_base: KnowledgeBase) -> None:
    hashes = set(Chunk.objects.filter(knowledge_base=knowledge_base).values_list("content_hash", flat=True))
    for document in Document.objects.filter(knowledge_base=knowledge_base).exclude(file=""):
        document.file.delete(save=False)
    EmbeddingCacheEntry.objects.filter(
        model=knowledge_base.embedding_model,
        content_hash__in=hashes,
        created_at__gte=knowledge_base.created_at,
    ).delete()
    UsageEvent.objects.filter(knowledge_base_id=knowledge_base.pk).delete()
    knowledge_base.delete()


def report(results: dict) -> None:
    print_machine(results["machine"])
    print(
        f"Gemini: loopback fake, {results['gemini_latency_s']} s a request, "
        f"{results['remote_concurrency']} requests at a time, up to 100 texts each"
    )
    print(
        f"{'document_ingest, 96 XQuAD articles':<40}{'chunks':>8}{'seconds':>9}{'chunks/s':>10}  stages (s)"
    )
    for model in (LOCAL, GEMINI):
        row = results[model]
        stages = ", ".join(f"{name} {value}" for name, value in row["stage_seconds"].items())
        print(f"{model:<40}{row['chunks']:>8}{row['seconds']:>9}{row['chunks_per_second']:>10}  {stages}")
    pdf = results["pdf"]
    stages = ", ".join(f"{name} {pdf['stage_seconds'][name]} s" for name in STAGES)
    print(
        f"PDF, {pdf['pages']} pages ({pdf['bytes'] / 1024:.0f} KB), {pdf['chunks']} chunks "
        f"({pdf['embedded']} embedded): upload to ready {pdf['seconds_upload_to_ready']} s ({stages})"
    )


if __name__ == "__main__":
    main()
