"""Markdown and plain text: a line-based reader, enough for support articles.

Headings build the heading path; paragraphs, lists, tables and fenced code become
blocks. Inline markers are stripped lightly so they do not cost embedding tokens.
"""

import re

from knowledge.ingest.extract.base import Block, BlockList, Extracted, HeadingStack

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+•]|\d{1,9}[.)])[ \t]+(.*)$")
_TABLE_SEPARATOR = re.compile(r"^[\s|:-]*-{3,}[\s|:-]*$")
_BLANK_LINES = re.compile(r"\n[ \t\f\v]*\n")

_INLINE = (
    (re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)"), r"\1"),
    (re.compile(r"\[([^\]\n]+)\]\(((?:https?://|mailto:)[^)\s]+)(?:\s+\"[^\"\n]*\")?\)"), r"\1 (\2)"),
    (re.compile(r"\[([^\]\n]+)\]\([^)\n]*\)"), r"\1"),
    (re.compile(r"<((?:https?://|mailto:)[^>\s]+)>"), r"\1"),
    (re.compile(r"</?(?:b|i|u|em|strong|br|span|sup|sub|small|kbd|code|mark)\b[^>]*>", re.IGNORECASE), " "),
    (re.compile(r"`+([^`\n]+?)`+"), r"\1"),
    (re.compile(r"(\*\*|__|~~)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), r"\1"),
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])"), r"\1"),
)


def extract_markdown(text: str) -> Extracted:
    return Extracted(file_type="markdown", blocks=_MarkdownReader().read(text))


def extract_plain(text: str) -> Extracted:
    blocks = BlockList()
    for paragraph in _BLANK_LINES.split(_unix_newlines(text)):
        blocks.add_paragraph(paragraph)
    return Extracted(file_type="text", blocks=blocks.blocks)


def strip_inline(text: str) -> str:
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    return text


def _unix_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


class _MarkdownReader:
    def __init__(self) -> None:
        self.blocks = BlockList()
        self.headings = HeadingStack()
        self.kind = ""  # what `lines` holds: "paragraph", "list", "table" or "code"
        self.lines: list[str] = []

    def read(self, text: str) -> list[Block]:
        fence = ""
        for line in _without_front_matter(_unix_newlines(text).split("\n")):
            if fence:
                if line.strip().startswith(fence):
                    self.flush()
                    fence = ""
                else:
                    self.lines.append(line)
                continue
            if match := _FENCE.match(line):
                self.flush()
                fence, self.kind = match.group(1), "code"
                continue
            self.feed(line)
        self.flush()
        return self.blocks.blocks

    def feed(self, line: str) -> None:
        stripped = line.strip()
        if stripped.startswith(">"):
            line = stripped = stripped.lstrip("> \t")
        if not stripped:
            self.flush()
        elif match := _ATX.match(line):
            self.flush()
            self.headings.enter(len(match.group(1)), strip_inline(match.group(2) or ""))
        elif _SETEXT.match(line) and self.kind == "paragraph":
            title = " ".join(self.lines)
            self.lines, self.kind = [], ""
            self.headings.enter(1 if stripped.startswith("=") else 2, strip_inline(title))
        elif _RULE.match(line):
            self.flush()
        elif stripped.startswith("|"):
            self.start("table")
            if not _TABLE_SEPARATOR.match(stripped):
                cells = [strip_inline(cell.strip()) for cell in stripped.strip("|").split("|")]
                self.lines.append(" | ".join(cell for cell in cells if cell))
        elif match := _LIST_ITEM.match(line):
            self.start("list")
            self.lines.append(strip_inline(match.group(1)))
        elif self.kind == "list" and line[:1] in (" ", "\t"):
            self.lines[-1] += " " + strip_inline(stripped)
        else:
            self.start("paragraph")
            self.lines.append(line)

    def start(self, kind: str) -> None:
        if self.kind != kind:
            self.flush()
            self.kind = kind

    def flush(self) -> None:
        if self.kind == "paragraph":
            self.blocks.add_paragraph(strip_inline(" ".join(self.lines)), self.headings.path)
        elif self.lines:
            self.blocks.add_lines(self.lines, self.headings.path)
        self.kind, self.lines = "", []


def _without_front_matter(lines: list[str]) -> list[str]:
    if lines and lines[0].strip() == "---":
        for index, line in enumerate(lines[1:100], start=1):
            if line.strip() in ("---", "..."):
                return lines[index + 1 :]
    return lines
