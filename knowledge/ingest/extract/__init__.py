"""Uploaded file bytes -> text blocks with heading paths (and FAQ pairs for FAQ sheets).

The file type is decided by content, one module reads each format, and every
failure, library errors included, surfaces as an ExtractionError whose message a
support person can act on.
"""

import logging
from collections.abc import Callable
from typing import TypeVar

from knowledge.ingest.extract.base import FILE_TYPES, Block, Extracted, ExtractionError, FaqPair
from knowledge.ingest.extract.detect import sniff
from knowledge.ingest.extract.html import decode_html, extract_html
from knowledge.ingest.extract.markdown import extract_markdown, extract_plain
from knowledge.ingest.extract.pdf import extract_pdf
from knowledge.ingest.extract.spreadsheet import extract_csv, extract_xlsx
from knowledge.ingest.extract.word import extract_docx

__all__ = [
    "FILE_TYPES",
    "Block",
    "Extracted",
    "ExtractionError",
    "FaqPair",
    "detect_file_type",
    "extract",
    "extract_text",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
_TEXT_READERS = {
    "html": extract_html,
    "markdown": extract_markdown,
    "text": extract_plain,
    "csv": extract_csv,
}
_BINARY_READERS = {"pdf": extract_pdf, "docx": extract_docx, "xlsx": extract_xlsx}


def detect_file_type(data: bytes, filename: str = "") -> str:
    """One of FILE_TYPES, by content; raises ExtractionError for empty or unsupported files."""
    return _guarded(lambda: sniff(data, filename)[0])


def extract(data: bytes, *, filename: str = "", max_bytes: int = DEFAULT_MAX_BYTES) -> Extracted:
    if not data:
        raise ExtractionError("The file is empty.")
    if len(data) > max_bytes:
        raise ExtractionError(
            f"The file is larger than the {max_bytes / 1_048_576:g} MB limit; split it into smaller files."
        )
    return _guarded(lambda: _finished(_read(data, filename)))


def extract_text(text: str, *, file_type: str = "markdown") -> Extracted:
    """Text typed or pasted by support staff: markdown (the default), text, html or csv."""
    if file_type not in _TEXT_READERS:
        raise ValueError(f"extract_text reads {', '.join(_TEXT_READERS)}, not {file_type!r}")
    if not text.strip():
        raise ExtractionError("The text is empty.")
    return _guarded(lambda: _finished(_TEXT_READERS[file_type](text)))


def _read(data: bytes, filename: str) -> Extracted:
    file_type, text = sniff(data, filename)
    if text is None:
        return _BINARY_READERS[file_type](data)
    if file_type == "html":
        text = decode_html(data, text)
    return _TEXT_READERS[file_type](text)


def _finished(extracted: Extracted) -> Extracted:
    if not extracted.blocks:
        raise ExtractionError("No text could be extracted from the file.")
    return extracted


def _guarded(work: Callable[[], T]) -> T:
    try:
        return work()
    except ExtractionError:
        raise
    except Exception as error:
        # Parsers meet hostile input; whatever they raise, the upload fails readably.
        log.warning("extraction failed unexpectedly", exc_info=True)
        raise ExtractionError("The file could not be read; it may be damaged.") from error
