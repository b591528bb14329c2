"""FAQ sheets: CSV and XLSX with a question column and an answer column.

Each question/answer row becomes one FaqPair and one FAQ block, which the splitter
keeps whole, so an answer is never retrieved without its question.
"""

import csv
import datetime
import io
import itertools
import re
import time
from collections.abc import Iterable, Sequence

import openpyxl

from knowledge.ingest.extract.base import (
    BlockList,
    Extracted,
    ExtractionError,
    FaqPair,
    clean_inline,
    clean_lines,
)
from knowledge.ingest.extract.zipguard import check_zip
from knowledge.textnorm import fold

MAX_ROWS = 50_000
MAX_COLUMNS = 100
HEADER_SEARCH_ROWS = 10
MAX_SECONDS = 120
_DELIMITERS = (",", ";", "\t")

# Header names after fold(): lower case, no diacritics, no punctuation.
QUESTION_NAMES = frozenset({"question", "questions", "q", "cau hoi", "hoi"})
ANSWER_NAMES = frozenset({"answer", "answers", "a", "tra loi", "cau tra loi", "dap an", "dap"})
EXPECTED = (
    'Name the first row\'s columns "Question" and "Answer" (or "Câu hỏi" and "Trả lời"), '
    "or use a sheet with exactly two columns: question, then answer."
)
NO_PAIRS = "The FAQ sheet has no row with both a question and an answer."
_DEFAULT_SHEET_NAME = re.compile(r"(sheet|trang tinh|feuil|tabelle|hoja|foglio|planilha) ?\d*")

Row = Sequence[object]


def faq_columns(header: Row) -> tuple[int, int] | None:
    names = [fold(_cell_text(cell)) for cell in header]
    question = next((i for i, name in enumerate(names) if name in QUESTION_NAMES), None)
    answer = next((i for i, name in enumerate(names) if name in ANSWER_NAMES and i != question), None)
    if question is None or answer is None:
        return None
    return question, answer


def looks_like_faq_csv(text: str) -> bool:
    """True when the first line parses as a delimited header with question and answer columns."""
    first_line = next((line for line in text[:8192].splitlines() if line.strip()), "")
    return any(faq_columns(_parse_line(first_line, delimiter)) for delimiter in _DELIMITERS)


def extract_csv(text: str) -> Extracted:
    blocks = BlockList()
    pairs: list[FaqPair] = []
    rows = csv.reader(io.StringIO(text), delimiter=_choose_delimiter(text))
    try:
        found = _read_faq_sheet(rows, blocks, pairs, heading_path=(), deadline=time.monotonic() + MAX_SECONDS)
    except csv.Error as error:
        raise ExtractionError(f"The CSV file could not be read as a table ({error}).") from error
    if not found:
        raise ExtractionError(f"The CSV file has no question and answer columns. {EXPECTED}")
    if not pairs:
        raise ExtractionError(NO_PAIRS)
    return Extracted(file_type="csv", blocks=blocks.blocks, faq_pairs=pairs)


def extract_xlsx(data: bytes) -> Extracted:
    check_zip(data)
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as error:
        raise ExtractionError("The Excel file could not be opened; it may be damaged.") from error
    blocks = BlockList()
    pairs: list[FaqPair] = []
    found = False
    deadline = time.monotonic() + MAX_SECONDS
    try:
        for sheet in workbook.worksheets:
            title = clean_inline(sheet.title)
            heading_path = () if _DEFAULT_SHEET_NAME.fullmatch(fold(title)) else (title,)
            rows = sheet.iter_rows(max_col=MAX_COLUMNS, values_only=True)
            if _read_faq_sheet(rows, blocks, pairs, heading_path=heading_path, deadline=deadline):
                found = True
    finally:
        workbook.close()
    if not found:
        raise ExtractionError(f"No sheet in the Excel file has question and answer columns. {EXPECTED}")
    if not pairs:
        raise ExtractionError(NO_PAIRS)
    return Extracted(file_type="xlsx", blocks=blocks.blocks, faq_pairs=pairs)


def _read_faq_sheet(
    rows: Iterable[Row],
    blocks: BlockList,
    pairs: list[FaqPair],
    *,
    heading_path: tuple[str, ...],
    deadline: float,
) -> bool:
    """Append one sheet's pairs and blocks; False when it has no recognisable columns."""
    iterator = iter(rows)
    leading: list[Row] = []
    columns = None
    for row in iterator:
        if not any(_cell_text(cell).strip() for cell in row):
            continue
        leading.append(row)
        # Sheets often open with a title row or two above the real header.
        if (columns := faq_columns(row)) is not None or len(leading) == HEADER_SEARCH_ROWS:
            break
    if columns is not None:
        pending: list[Row] = []
    elif not leading:
        return False
    else:
        filled = [i for i, cell in enumerate(leading[0]) if _cell_text(cell).strip()]
        if len(filled) != 2:
            return False
        columns = (filled[0], filled[1])
        pending = leading[1:] if _looks_like_labels(leading[0], columns) else leading
    for count, row in enumerate(itertools.chain(pending, iterator)):
        if count % 1000 == 0 and time.monotonic() > deadline:
            raise ExtractionError("The sheet takes too long to read; remove unused rows and upload it again.")
        pair = _pair(row, columns)
        if pair is None:
            continue
        if len(pairs) >= MAX_ROWS:
            raise ExtractionError(f"The file has more than {MAX_ROWS:,} questions; split it into parts.")
        pairs.append(pair)
        blocks.add_faq(pair, heading_path)
    return True


def _pair(row: Row, columns: tuple[int, int]) -> FaqPair | None:
    question_at, answer_at = columns
    question = clean_inline(_cell_text(row[question_at])) if question_at < len(row) else ""
    answer = clean_lines(_cell_text(row[answer_at])) if answer_at < len(row) else ""
    if not question or not answer:
        return None
    return FaqPair(question=question, answer=answer)


def _looks_like_labels(header: Row, columns: tuple[int, int]) -> bool:
    # A two-column sheet without known names: short cells that are not questions are
    # column labels ("Hỏi", "Đáp"), anything else is already the first FAQ row.
    cells = [_cell_text(header[i]).strip() for i in columns]
    return all(len(cell.split()) <= 3 and not cell.endswith("?") for cell in cells)


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _choose_delimiter(text: str) -> str:
    first_line = next((line for line in text[:8192].splitlines() if line.strip()), "")
    for delimiter in _DELIMITERS:
        if faq_columns(_parse_line(first_line, delimiter)):
            return delimiter
    return max(_DELIMITERS, key=lambda delimiter: len(_parse_line(first_line, delimiter)))


def _parse_line(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return []
