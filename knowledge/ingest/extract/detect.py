"""File type by content, and bytes -> str for the text-based formats.

Magic bytes decide first; the filename only breaks ties among text formats (an
upload named .txt that starts with %PDF- is a PDF).
"""

import codecs
import io
import re
import zipfile
from urllib.parse import urlsplit

import charset_normalizer

from knowledge.ingest.extract.base import ExtractionError
from knowledge.ingest.extract.spreadsheet import looks_like_faq_csv

UNSUPPORTED = (
    "This is not a supported document. Upload a PDF, Word (.docx), Excel (.xlsx), web page (HTML), "
    "Markdown, CSV or plain text file."
)

_IMAGE = "This is an image; text in images cannot be read. Upload a document with selectable text."
_BINARY_KINDS = (
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "This is an old-format Office file (.doc, .xls, .ppt) or a password-protected Office file. "
        "Save it as .docx or .xlsx without a password and upload it again.",
    ),
    (b"{\\rtf", "RTF files are not supported; save the file as .docx or PDF and upload it again."),
    (b"\x89PNG", _IMAGE),
    (b"\xff\xd8\xff", _IMAGE),
    (b"GIF8", _IMAGE),
)

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

_HTML_START = re.compile(
    r"\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*"
    r"<(!doctype\s+html|html|head|body|meta|title|link|div|p|h[1-6]|table|ul|ol|section|article|main|span|a|br)\b",
    re.IGNORECASE | re.DOTALL,
)
_HTML_ANYWHERE = re.compile(r"<(?:html|body|head)\b", re.IGNORECASE)

_MD_STRONG = (
    re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.MULTILINE),
    re.compile(r"^ {0,3}(?:```|~~~)", re.MULTILINE),
    re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$", re.MULTILINE),
    re.compile(r"^[^\s=-].*\n={3,}[ \t]*$", re.MULTILINE),
)
_MD_WEAK = (
    re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])[ \t]+\S", re.MULTILINE),
    re.compile(r"!?\[[^\]\n]+\]\([^)\s]+\)"),
    re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"),
    re.compile(r"`[^`\n]+`"),
)

_LIKELY = ("cp1258", "cp1252", "latin_1", "iso8859_15", "cp1250")  # most likely first
# In windows-1258, Vietnamese tone marks are separate combining bytes after a vowel.
_CP1258_TONE = re.compile(
    rb"[aeiouyAEIOUY\xe2\xea\xf4\xe3\xd5\xdd\xc2\xca\xd4\xc3\xf5\xfd][\xcc\xec\xde\xd2\xf2]"
)


def sniff(data: bytes, filename: str = "") -> tuple[str, str | None]:
    """(file type, decoded text for the text-based types, None for binary ones)."""
    if not data:
        raise ExtractionError("The file is empty.")
    if data.lstrip()[:5] == b"%PDF-":
        return "pdf", None
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _zip_kind(data), None
    for magic, message in _BINARY_KINDS:
        if data.startswith(magic):
            raise ExtractionError(message)
    text = decode_text(data)
    return text_kind(text, filename), text


def text_kind(text: str, filename: str = "") -> str:
    suffix = file_suffix(filename)
    head = text[:4096]
    html = _HTML_START.match(head)
    if html and (suffix not in {".md", ".markdown"} or html.group(1).lower() in {"!doctype html", "html"}):
        return "html"
    if suffix in {".html", ".htm", ".xhtml"} and _HTML_ANYWHERE.search(head):
        return "html"
    if suffix in {".csv", ".tsv"} or looks_like_faq_csv(text):
        return "csv"
    if suffix in {".md", ".markdown"} or any(pattern.search(text) for pattern in _MD_STRONG):
        return "markdown"
    weak_signals = sum(1 for pattern in _MD_WEAK if pattern.search(text))
    if weak_signals >= 2 and suffix != ".txt":
        return "markdown"
    return "text"


def file_suffix(filename: str) -> str:
    # The caller passes a URL for fetched pages: only its path may carry a suffix.
    path = urlsplit(filename).path if "://" in filename else filename
    name = re.split(r"[/\\]", path)[-1].lower()
    return name[name.rfind(".") :] if "." in name else ""


def _zip_kind(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except Exception as error:
        raise ExtractionError("The file looks like a ZIP archive but is damaged.") from error
    if "word/document.xml" in names:
        return "docx"
    if "xl/workbook.xml" in names:
        return "xlsx"
    if "ppt/presentation.xml" in names:
        raise ExtractionError("PowerPoint files are not supported; save the slides as PDF and upload that.")
    raise ExtractionError(UNSUPPORTED)


def decode_text(data: bytes) -> str:
    """Decode a text file: BOM, then strict UTF-8, then detection. Binary data is refused."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _checked(_decode(data, encoding))
    if utf16 := _utf16_without_bom(data):
        return _checked(_decode(data, utf16))
    try:
        return _checked(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    if (text := _mostly_utf8(data)) is not None:
        return _checked(text)
    return _checked(_decode(data, _detected_encoding(data)))


def _mostly_utf8(data: bytes) -> str | None:
    """UTF-8 with a few damaged bytes (say, two files pasted together) rather than a legacy code page."""
    text = data.decode("utf-8", errors="replace")
    damaged = text.count("\ufffd")
    valid_non_ascii = len(text) - len(text.encode("ascii", "ignore")) - damaged
    return text if valid_non_ascii >= 10 * damaged else None


def _detected_encoding(data: bytes) -> str:
    matches = list(charset_normalizer.from_bytes(data))
    if not matches:
        raise ExtractionError(UNSUPPORTED)
    # Detection on short texts picks among near-ties somewhat arbitrarily (cp775 for a
    # French "café"); prefer the code pages our users actually have when they tie.
    best = matches[0]
    ties = {match.encoding for match in matches if match.chaos <= best.chaos + 0.01}
    encoding = next((candidate for candidate in _LIKELY if candidate in ties), best.encoding)
    if encoding != "cp1258" and len(_CP1258_TONE.findall(data[:65536])) >= 2:
        # Short Vietnamese texts in windows-1258 are often guessed as another code page.
        try:
            data.decode("cp1258")
        except UnicodeDecodeError:
            return encoding
        return "cp1258"
    return encoding


def _utf16_without_bom(data: bytes) -> str | None:
    sample = data[:8192]
    even_zeros = sample[0::2].count(0)
    odd_zeros = sample[1::2].count(0)
    pairs = max(len(sample) // 2, 1)
    # Latin-script UTF-16 has a zero in the same half of most code units; binary does not.
    if odd_zeros > 0.3 * pairs and even_zeros < 0.05 * pairs:
        return "utf-16-le"
    if even_zeros > 0.3 * pairs and odd_zeros < 0.05 * pairs:
        return "utf-16-be"
    return None


def _decode(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as error:
        raise ExtractionError(UNSUPPORTED) from error


def _checked(text: str) -> str:
    """Refuse text with more than a sprinkle of control characters: binary decoded by accident."""
    sample = text[:65536]
    if not sample:
        return text
    junk = sum(1 for char in sample if (char < " " and char not in "\t\n\r\f\v") or "\x7f" <= char < "\xa0")
    if junk > 0.02 * len(sample) + 2:
        raise ExtractionError(UNSUPPORTED)
    return text
