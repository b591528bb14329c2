"""Refuse zip bombs before python-docx or openpyxl unpack a .docx/.xlsx.

Only the central directory is read. Python's zipfile never inflates an entry past
the size the directory declares, so checking the declared sizes bounds the real work.
"""

import io
import zipfile

from knowledge.ingest.extract.base import ExtractionError

MAX_ENTRIES = 10_000
MAX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
MAX_RATIO = 100
RATIO_CHECK_BYTES = 10 * 1024 * 1024  # small parts (styles, shared strings) compress very well

_REFUSED = "The file unpacks to far more data than a normal document, so it was refused for safety."


def check_zip(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except Exception as error:
        raise ExtractionError("The file is damaged and cannot be opened.") from error
    if len(entries) > MAX_ENTRIES:
        raise ExtractionError(_REFUSED)
    if sum(entry.file_size for entry in entries) > MAX_UNCOMPRESSED_BYTES:
        raise ExtractionError(_REFUSED)
    for entry in entries:
        if entry.file_size > RATIO_CHECK_BYTES and entry.file_size > MAX_RATIO * max(entry.compress_size, 1):
            raise ExtractionError(_REFUSED)
