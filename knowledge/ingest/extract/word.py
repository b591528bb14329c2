"""Word (.docx): Title and Heading 1..9 styles build the heading path; tables become rows."""

import io
import re

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from knowledge.ingest.extract.base import BlockList, Extracted, ExtractionError, HeadingStack, clean_inline
from knowledge.ingest.extract.zipguard import check_zip

_HEADING_STYLE = re.compile(r"heading\s*(\d)", re.IGNORECASE)


def extract_docx(data: bytes) -> Extracted:
    check_zip(data)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as error:
        raise ExtractionError("The Word file could not be opened; it may be damaged.") from error
    blocks = BlockList()
    headings = HeadingStack()
    list_items: list[str] = []
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            level = _heading_level(item)
            if level is None and _is_list_item(item):
                list_items.append(item.text)
                continue
            blocks.add_lines(list_items, headings.path)
            list_items = []
            if level is None:
                blocks.add_paragraph(item.text, headings.path)
            else:
                headings.enter(level, item.text)
        elif isinstance(item, Table):
            blocks.add_lines(list_items, headings.path)
            list_items = []
            blocks.add_lines(_table_rows(item), headings.path)
    blocks.add_lines(list_items, headings.path)
    return Extracted(file_type="docx", blocks=blocks.blocks)


def _heading_level(paragraph: Paragraph) -> int | None:
    name = paragraph.style.name if paragraph.style is not None else ""
    if name == "Title":
        return 0
    match = _HEADING_STYLE.fullmatch(name or "")
    return int(match.group(1)) if match else None


def _is_list_item(paragraph: Paragraph) -> bool:
    name = (paragraph.style.name if paragraph.style is not None else "") or ""
    properties = paragraph._p.pPr
    return name.startswith("List") or (properties is not None and properties.numPr is not None)


def _table_rows(table: Table) -> list[str]:
    rows = []
    for row in table.rows:
        cells = []
        previous = None
        for cell in row.cells:
            # A merged cell is returned once per grid column it spans.
            if cell._tc is previous:
                continue
            previous = cell._tc
            text = clean_inline(cell.text)
            if text:
                cells.append(text)
        rows.append(" | ".join(cells))
    return rows
