"""Types, limits and text clean-up shared by the per-format extractors."""

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

FILE_TYPES = ("pdf", "docx", "html", "markdown", "text", "csv", "xlsx")

# Limits against hostile or accidental giant inputs. The upload size cap is enforced
# by the caller's max_bytes; these bound what a small file may expand into.
MAX_TEXT_CHARS = 5_000_000
MAX_HEADING_CHARS = 200


@dataclass(frozen=True)
class Block:
    text: str
    heading_path: tuple[str, ...] = ()
    is_faq: bool = False


@dataclass(frozen=True)
class FaqPair:
    question: str
    answer: str


@dataclass(frozen=True)
class Extracted:
    file_type: str
    blocks: list[Block]
    faq_pairs: list[FaqPair] = field(default_factory=list)
    page_count: int | None = None


class ExtractionError(Exception):
    """The file cannot be used; str(error) is a sentence a support person understands."""


# Control characters (but not whitespace, collapsed later), zero-width and BOM marks,
# soft hyphens, the replacement character, lone surrogates and private-use glyphs
# (what PDFs produce for unmapped fonts): none of them carries meaning for search.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u200b\u2060\ufeff\ufffd\ud800-\udfff\ue000-\uf8ff]"
)


def clean_chars(text: str) -> str:
    # NFC after removal, so a mark separated from its letter by junk still composes;
    # Vietnamese from windows-1258 or macOS arrives decomposed.
    return unicodedata.normalize("NFC", _INVISIBLE.sub("", text))


def clean_inline(text: str) -> str:
    """One paragraph: every run of whitespace, line breaks included, becomes one space."""
    return " ".join(clean_chars(text).split())


def clean_lines(lines: str | Iterable[str]) -> str:
    """Lists, tables and code: keep one item per line, drop empty lines."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    cleaned = (" ".join(clean_chars(line).split()) for line in lines)
    return "\n".join(line for line in cleaned if line)


def too_much_text_error() -> ExtractionError:
    return ExtractionError(
        f"The document holds more than {MAX_TEXT_CHARS:,} characters of text; split it into smaller files."
    )


class BlockList:
    """Collects cleaned, non-empty blocks and enforces the total text limit as it goes."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._chars = 0

    def add_paragraph(self, text: str, heading_path: tuple[str, ...] = ()) -> None:
        self._append(clean_inline(text), heading_path, is_faq=False)

    def add_lines(self, lines: str | Iterable[str], heading_path: tuple[str, ...] = ()) -> None:
        self._append(clean_lines(lines), heading_path, is_faq=False)

    def add_faq(self, pair: FaqPair, heading_path: tuple[str, ...] = ()) -> None:
        self._append(f"{pair.question}\n{pair.answer}", heading_path, is_faq=True)

    def _append(self, text: str, heading_path: tuple[str, ...], *, is_faq: bool) -> None:
        if not text:
            return
        self._chars += len(text)
        if self._chars > MAX_TEXT_CHARS:
            raise too_much_text_error()
        self.blocks.append(Block(text=text, heading_path=heading_path, is_faq=is_faq))


class HeadingStack:
    """The current heading path: entering a level-n heading closes every heading at level n or deeper."""

    def __init__(self) -> None:
        self._entries: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> None:
        while self._entries and self._entries[-1][0] >= level:
            self._entries.pop()
        title = clean_inline(title)[:MAX_HEADING_CHARS]
        if title:
            self._entries.append((level, title))

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(title for _, title in self._entries)
