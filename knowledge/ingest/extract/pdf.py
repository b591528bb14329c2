"""PDF text per page with pypdf; bookmarks (the outline), when present, give heading paths.

PDFs come from anywhere, so every pypdf call is guarded: page and text caps, a time
budget per page and per file (checked between content-stream operators), and any
library exception becomes an ExtractionError.
"""

import io
import logging
import re
import time
from collections import defaultdict

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError

from knowledge.ingest.extract.base import (
    MAX_HEADING_CHARS,
    MAX_TEXT_CHARS,
    BlockList,
    Extracted,
    ExtractionError,
    clean_inline,
    too_much_text_error,
)
from knowledge.textnorm import fold

log = logging.getLogger(__name__)

MAX_PAGES = 2_000
PAGE_SECONDS = 10.0
TOTAL_SECONDS = 120.0
MAX_OUTLINE_ENTRIES = 5_000
MAX_OUTLINE_DEPTH = 6

PASSWORD_PROTECTED = "The PDF is password-protected; remove the password and upload it again."
DAMAGED = "The PDF is damaged and cannot be read; open it, save or print it as a new PDF and upload that."
NO_TEXT_LAYER = (
    "The PDF has no text layer (it looks like scanned images). Text recognition (OCR) is not supported; "
    "upload a PDF with selectable text or a Word file instead."
)
TOO_SLOW = "The PDF takes too long to read; it may be damaged. Print it to a new PDF and upload that."

_SENTENCE_END = tuple(".!?:;…")
_BULLET = re.compile(r"^(?:[•·▪◦‣●○■□\u2013\u2014*-]|\d{1,3}[.)])\s")

Outline = dict[int, list[tuple[str, tuple[str, ...]]]]


class _TooSlow(Exception):
    pass


def extract_pdf(data: bytes) -> Extracted:
    reader = _open(data)
    try:
        page_count = len(reader.pages)
    except Exception as error:
        raise ExtractionError(DAMAGED) from error
    if page_count > MAX_PAGES:
        raise ExtractionError(f"The PDF has {page_count:,} pages, over the {MAX_PAGES:,} limit; split it.")
    outline = _outline(reader)
    blocks = BlockList()
    path: tuple[str, ...] = ()
    chars = failed = 0
    deadline = time.monotonic() + TOTAL_SECONDS
    for index in range(page_count):
        text = _page_text(reader, index, deadline)
        if text is None:
            failed += 1
            continue
        chars += len(text)
        if chars > MAX_TEXT_CHARS:
            raise too_much_text_error()
        sections, path = _sections(text.splitlines(), outline.get(index, []), path)
        for section_path, lines in sections:
            for paragraph in _paragraphs(lines):
                blocks.add_paragraph(paragraph, section_path)
    if not blocks.blocks:
        raise ExtractionError(DAMAGED if failed == page_count else NO_TEXT_LAYER)
    return Extracted(file_type="pdf", blocks=blocks.blocks, page_count=page_count)


def _open(data: bytes) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        # Many PDFs are "protected" only by an owner password: the empty user password opens them.
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise ExtractionError(PASSWORD_PROTECTED)
    except FileNotDecryptedError as error:
        raise ExtractionError(PASSWORD_PROTECTED) from error
    except DependencyError as error:
        raise ExtractionError("The PDF uses an encryption we cannot open; remove its protection.") from error
    except ExtractionError:
        raise
    except Exception as error:
        raise ExtractionError(DAMAGED) from error
    return reader


def _page_text(reader: PdfReader, index: int, deadline: float) -> str | None:
    """The page's text, or None when this one page cannot be read (the others still count)."""
    page_deadline = min(time.monotonic() + PAGE_SECONDS, deadline)

    def check_time(*_: object) -> None:
        if time.monotonic() > page_deadline:
            raise _TooSlow

    try:
        return reader.pages[index].extract_text(visitor_operand_before=check_time)
    except _TooSlow as error:
        raise ExtractionError(TOO_SLOW) from error
    except Exception:
        log.warning("PDF page %d could not be read", index + 1, exc_info=True)
        return None


def _outline(reader: PdfReader) -> Outline:
    """Page index -> bookmarks starting on it, as (title, heading path), in outline order."""
    starts: Outline = defaultdict(list)
    count = 0

    def walk(items: list, parents: tuple[str, ...]) -> None:
        nonlocal count
        path = parents
        for item in items:
            if isinstance(item, list):
                if len(path) < MAX_OUTLINE_DEPTH:
                    walk(item, path)
                continue
            count += 1
            if count > MAX_OUTLINE_ENTRIES:
                return
            title = clean_inline(str(item.title or ""))[:MAX_HEADING_CHARS]
            path = (*parents, title) if title else parents
            page = reader.get_destination_page_number(item)
            if page is not None and page >= 0:
                starts[page].append((title, path))

    try:
        walk(reader.outline, ())
    except Exception:
        log.warning("PDF outline could not be read; continuing without headings", exc_info=True)
        return {}
    return starts


def _sections(
    lines: list[str], starts: list[tuple[str, tuple[str, ...]]], path: tuple[str, ...]
) -> tuple[list[tuple[tuple[str, ...], list[str]]], tuple[str, ...]]:
    """Cut a page at the lines that repeat its bookmarks' titles.

    A bookmark whose title is not found on the page takes effect where the previous one
    did (the top of the page if none). Returns the sections and the path carried on.
    """
    cuts: list[tuple[int, bool, tuple[str, ...]]] = []
    position = 0
    for title, entry_path in starts:
        found = next((i for i in range(position, len(lines)) if _is_heading_line(lines[i], title)), None)
        if found is None:
            cuts.append((position, False, entry_path))
        else:
            cuts.append((found, True, entry_path))
            position = found + 1
    sections = []
    start = 0
    for at, is_title_line, entry_path in cuts:
        if at > start:
            sections.append((path, lines[start:at]))
        path = entry_path
        start = at + 1 if is_title_line else at
    sections.append((path, lines[start:]))
    return sections, path


def _is_heading_line(line: str, title: str) -> bool:
    folded_line, folded_title = fold(line), fold(title)
    if not folded_title or not folded_line.endswith(folded_title):
        return False
    return len(folded_line) - len(folded_title) <= 6  # room for numbering such as "2.1 "


def _paragraphs(lines: list[str]) -> list[str]:
    """Rejoin the page's lines into paragraphs: pypdf returns one line per printed line."""
    widths = [len(line.strip()) for line in lines if line.strip()]
    full_width = 0.8 * max(widths) if widths else 0
    paragraphs: list[str] = []
    current: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line or _BULLET.match(line):
            if current:
                paragraphs.append(" ".join(current))
                current = []
            if not line:
                continue
        if current and current[-1].endswith("-") and line[:1].islower():
            current[-1] = current[-1][:-1] + line
        else:
            current.append(line)
        # A short line that ends a sentence ends the paragraph.
        if current[-1].endswith(_SENTENCE_END) and len(line) < full_width:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs
