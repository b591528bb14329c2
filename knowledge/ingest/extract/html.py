"""Web pages: the main content only, with h1-h6 as the heading path.

Navigation, menus, cookie banners, sidebars and footers repeat on every page of a
help centre; left in, they would match every question and crowd out real answers.
"""

import codecs
import re

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PreformattedString

from knowledge.ingest.extract.base import BlockList, Extracted, HeadingStack, clean_inline

_DROP_TAGS = [
    "script", "style", "noscript", "template", "svg", "iframe", "object", "embed", "canvas", "video",
    "audio", "map", "nav", "aside", "form", "button", "select", "input", "textarea", "dialog",
]  # fmt: skip
_NOISE_ROLES = frozenset(
    {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar"}
)
_NOISE_NAME = re.compile(
    r"(?:^|[-_])(?:nav|navbar|navigation|menu|menubar|breadcrumbs?|sidebar|cookies?|cookie-?banner|consent|gdpr"
    r"|skip-?link|footer|social|share)(?:$|[-_])",
    re.IGNORECASE,
)
# Page-state classes such as "has-sidebar" or "is-menu-open" sit on content wrappers.
_STATE_PREFIX = re.compile(r"^(?:has|is|with|no|js)-", re.IGNORECASE)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_INLINE_TAGS = frozenset([
    "a", "abbr", "acronym", "b", "bdi", "bdo", "big", "cite", "code", "data", "del", "dfn", "em", "font",
    "i", "img", "ins", "kbd", "label", "mark", "nobr", "output", "picture", "q", "rp", "rt", "ruby", "s",
    "samp", "small", "source", "span", "strike", "strong", "sub", "sup", "time", "tt", "u", "var", "wbr",
])  # fmt: skip
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
# As browsers do (WHATWG): these labels mean windows-1252.
_LATIN1_LABELS = frozenset({"iso-8859-1", "iso8859-1", "latin1", "latin-1", "us-ascii", "ascii"})


def decode_html(data: bytes, detected: str) -> str:
    """The page's meta charset, unless a BOM or valid UTF-8 already settled it (`detected`)."""
    declared = _META_CHARSET.search(data[:4096])
    if declared is None or data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return detected
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        label = declared.group(1).decode("ascii").lower()
        try:
            return data.decode("cp1252" if label in _LATIN1_LABELS else label)
        except (LookupError, UnicodeDecodeError):
            pass
    return detected


def extract_html(text: str) -> Extracted:
    soup = BeautifulSoup(text, "lxml")
    root = _main_content(soup)
    _drop_noise(root)
    for br in root.find_all("br"):
        br.replace_with("\n")
    # Adjacent block elements must not glue their words together ("<p>a</p><p>b</p>").
    for tag in root.find_all(_is_block):
        if tag.parent is not None:
            tag.insert_after(" ")
    reader = _HtmlReader()
    reader.walk(root)
    reader.flush_inline()
    return Extracted(file_type="html", blocks=reader.blocks.blocks)


def _main_content(soup: BeautifulSoup) -> Tag:
    main = soup.find("main") or soup.find(attrs={"role": "main"})
    if isinstance(main, Tag):
        return main
    articles = soup.find_all("article")
    if len(articles) == 1:
        return articles[0]
    return soup.body or soup


def _drop_noise(root: Tag) -> None:
    for tag in root.find_all(_DROP_TAGS):
        if not tag.decomposed:
            tag.decompose()
    for tag in root.find_all(True):
        if not tag.decomposed and _is_noise(tag, root):
            tag.decompose()


def _is_noise(tag: Tag, root: Tag) -> bool:
    if tag.name == "footer" or (tag.name == "header" and root.name not in ("main", "article")):
        return True
    if tag.has_attr("hidden") or tag.get("aria-hidden") == "true":
        return True
    if _HIDDEN_STYLE.search(str(tag.get("style", ""))):
        return True
    if str(tag.get("role", "")).lower() in _NOISE_ROLES:
        return True
    names = [*tag.get("class", []), str(tag.get("id", ""))]
    marked = any(_NOISE_NAME.search(name) and not _STATE_PREFIX.match(name) for name in names if name)
    # A wrapper holding the page title is content even if its class says otherwise.
    return marked and tag.find("h1") is None


def _is_block(tag: Tag) -> bool:
    return tag.name not in _INLINE_TAGS


def _text(tag: Tag) -> str:
    return clean_inline("".join(_strings(tag)))


def _strings(tag: Tag) -> list[str]:
    return [str(s) for s in tag.find_all(string=True) if not isinstance(s, PreformattedString)]


class _HtmlReader:
    def __init__(self) -> None:
        self.blocks = BlockList()
        self.headings = HeadingStack()
        self.inline: list[str] = []

    def walk(self, element: Tag) -> None:
        for child in element.children:
            if isinstance(child, NavigableString):
                if not isinstance(child, PreformattedString):
                    self.inline.append(str(child))
            elif isinstance(child, Tag):
                self.visit(child)

    def visit(self, tag: Tag) -> None:
        name = tag.name
        if name in _INLINE_TAGS:
            self.inline.extend(_strings(tag))
            return
        self.flush_inline()
        path = self.headings.path
        if name in _HEADINGS:
            self.headings.enter(_HEADINGS[name], _text(tag))
        elif name in ("ul", "ol"):
            self.blocks.add_lines(_list_lines(tag), path)
        elif name == "dl":
            self.blocks.add_lines((_text(item) for item in tag.find_all(["dt", "dd"])), path)
        elif name == "table" and not tag.find([*_HEADINGS, "table"]):
            self.blocks.add_lines(_table_rows(tag), path)
        elif name == "pre":
            self.blocks.add_lines("".join(_strings(tag)), path)
        elif name == "p":
            self.blocks.add_paragraph(_text(tag), path)
        else:
            self.walk(tag)
            self.flush_inline()

    def flush_inline(self) -> None:
        if self.inline:
            self.blocks.add_paragraph("".join(self.inline), self.headings.path)
            self.inline = []


def _list_lines(list_tag: Tag) -> list[str]:
    # Nested lists are flattened: each item keeps only the text that is its own.
    lines = []
    for item in list_tag.find_all("li"):
        own = [s for s in item.find_all(string=True) if s.find_parent("li") is item]
        lines.append(clean_inline("".join(str(s) for s in own if not isinstance(s, PreformattedString))))
    return lines


def _table_rows(table: Tag) -> list[str]:
    rows = []
    for row in table.find_all("tr"):
        if row.find_parent("table") is not table:
            continue
        cells = [_text(cell) for cell in row.find_all(["td", "th"], recursive=False)]
        rows.append(" | ".join(cell for cell in cells if cell))
    return rows
