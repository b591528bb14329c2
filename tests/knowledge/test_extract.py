"""Extraction of uploaded files; every test file is built here, at run time."""

import io
import random
import unicodedata
import zipfile
from pathlib import Path

import docx
import openpyxl
import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from knowledge.ingest.extract import Block, ExtractionError, FaqPair, detect_file_type, extract, extract_text
from knowledge.ingest.extract import pdf as pdf_reader
from knowledge.ingest.extract import zipguard as zip_guard

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
needs_unicode_font = pytest.mark.skipif(not FONT.exists(), reason="no TTF font with Vietnamese glyphs")

REFUND_VI = "Khách hàng được hoàn tiền trong vòng bảy ngày kể từ ngày nhận hàng. Vui lòng giữ hóa đơn."
SHIPPING_VI = "Giao hàng toàn quốc trong 2-4 ngày; nội thành Hà Nội giao trong ngày."
# Vietnamese tone marks that windows-1258 stores as separate combining characters.
_CP1258_TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}


def make_pdf(*pages: list[tuple[int | None, str, str]]) -> bytes:
    """Each page holds (bookmark level or None, title, body) sections; a title is printed and bookmarked."""
    document = FPDF()
    if FONT.exists():
        document.add_font("DejaVu", fname=str(FONT))
        document.set_font("DejaVu", size=11)
    else:
        document.set_font("Helvetica", size=11)
    for sections in pages:
        document.add_page()
        for level, title, body in sections:
            if title:
                if level is not None:
                    document.start_section(title, level=level)
                document.cell(text=title, new_x="LMARGIN", new_y="NEXT")
            if body:
                document.multi_cell(0, 7, body, new_x="LMARGIN", new_y="NEXT")
    return bytes(document.output())


def encrypted(pdf: bytes, *, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(build) -> bytes:
    document = docx.Document()
    build(document)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_xlsx(sheets: dict[str, list[list[object]]]) -> bytes:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def to_cp1258(text: str) -> bytes:
    """Encode as windows-1258 does: tone marks as combining characters after the letter."""
    out = bytearray()
    for char in text:
        try:
            out += char.encode("cp1258")
        except UnicodeEncodeError:
            parts = unicodedata.normalize("NFD", char)
            base = unicodedata.normalize("NFC", "".join(c for c in parts if c not in _CP1258_TONES))
            out += (base + "".join(c for c in parts if c in _CP1258_TONES)).encode("cp1258")
    return bytes(out)


def texts(blocks: list[Block]) -> list[str]:
    return [block.text for block in blocks]


def all_nfc(blocks: list[Block]) -> bool:
    return all(unicodedata.is_normalized("NFC", block.text) for block in blocks)


# Content sniffing


def test_a_pdf_named_txt_is_read_as_a_pdf() -> None:
    result = extract(make_pdf([(None, "", "Opening hours are 8am to 6pm.")]), filename="notes.txt")

    assert result.file_type == "pdf"
    assert texts(result.blocks) == ["Opening hours are 8am to 6pm."]


def test_markdown_uploaded_as_txt_is_read_as_markdown() -> None:
    assert detect_file_type(b"# Returns\n\nBring the receipt.\n", "returns.txt") == "markdown"


def test_html_named_md_with_a_doctype_is_read_as_html() -> None:
    assert detect_file_type(b"<!DOCTYPE html><html><body><p>Hi</p></body></html>", "page.md") == "html"


def test_a_faq_csv_is_recognised_by_its_header_without_an_extension() -> None:
    assert detect_file_type("Câu hỏi,Trả lời\nMấy giờ mở cửa?,8 giờ sáng\n".encode(), "upload") == "csv"


def test_text_without_structure_is_plain_text() -> None:
    assert detect_file_type(b"Call us on weekdays.\n\nWe answer within a day.\n", "") == "text"


def test_a_url_as_filename_gives_no_misleading_extension() -> None:
    assert detect_file_type(b"Call us on weekdays.", "https://help.example.com") == "text"


# PDF


@needs_unicode_font
def test_pdf_vietnamese_text_comes_out_in_nfc_with_its_page_count() -> None:
    result = extract(make_pdf([(None, "", REFUND_VI)], [(None, "", SHIPPING_VI)]))

    assert result.page_count == 2
    assert texts(result.blocks) == [REFUND_VI, SHIPPING_VI]
    assert all_nfc(result.blocks)


@needs_unicode_font
def test_pdf_bookmarks_become_heading_paths_and_cut_pages_at_the_title_line() -> None:
    pdf = make_pdf(
        [(0, "Đổi trả", REFUND_VI), (1, "Thời gian hoàn tiền", "Tiền về tài khoản sau 3-5 ngày làm việc.")],
        [(0, "Giao hàng", SHIPPING_VI)],
    )

    result = extract(pdf)

    assert [(block.heading_path, block.text) for block in result.blocks] == [
        (("Đổi trả",), REFUND_VI),
        (("Đổi trả", "Thời gian hoàn tiền"), "Tiền về tài khoản sau 3-5 ngày làm việc."),
        (("Giao hàng",), SHIPPING_VI),
    ]


def test_pdf_lines_are_joined_back_into_paragraphs() -> None:
    long_paragraph = " ".join(["Refunds are paid to the card used for the purchase."] * 6)

    result = extract(make_pdf([(None, "", long_paragraph + "\nA new paragraph starts here.")]))

    assert texts(result.blocks) == [long_paragraph, "A new paragraph starts here."]


def test_a_password_protected_pdf_is_refused_with_a_clear_message() -> None:
    pdf = encrypted(make_pdf([(None, "", "Secret prices.")]), user_password="s3cret")

    with pytest.raises(ExtractionError, match="password-protected; remove the password"):
        extract(pdf)


def test_a_pdf_with_only_an_owner_password_is_read() -> None:
    pdf = encrypted(make_pdf([(None, "", "Prices are public.")]), user_password="")

    assert texts(extract(pdf).blocks) == ["Prices are public."]


def test_a_corrupt_pdf_is_refused() -> None:
    with pytest.raises(ExtractionError, match="PDF is damaged"):
        extract(b"%PDF-1.7\n" + random.Random(1).randbytes(4000))


def test_a_pdf_without_a_text_layer_is_refused_as_needing_ocr() -> None:
    document = FPDF()
    document.add_page()
    document.rect(20, 20, 100, 60, style="F")

    with pytest.raises(ExtractionError, match=r"no text layer.*\(OCR\) is not supported"):
        extract(bytes(document.output()))


def test_a_pdf_over_the_page_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_reader, "MAX_PAGES", 2)

    with pytest.raises(ExtractionError, match="3 pages, over the 2 limit"):
        extract(make_pdf(*[[(None, "", "Page text.")]] * 3))


def test_a_pdf_with_too_much_text_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_reader, "MAX_TEXT_CHARS", 100)

    with pytest.raises(ExtractionError, match="more than 5,000,000 characters"):
        extract(make_pdf([(None, "", "Text " * 50)]))


def test_a_pdf_page_that_reads_too_slowly_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_reader, "PAGE_SECONDS", -1.0)

    with pytest.raises(ExtractionError, match="takes too long to read"):
        extract(make_pdf([(None, "", "Slow page.")]))


# Word


def test_docx_heading_styles_build_the_heading_path() -> None:
    def build(document) -> None:
        document.add_heading("Chính sách", level=0)
        document.add_heading("Đổi trả", level=1)
        document.add_paragraph(REFUND_VI)
        document.add_heading("Hoàn tiền", level=2)
        document.add_paragraph("Tiền về sau 3-5 ngày.")
        document.add_heading("Giao hàng", level=1)
        document.add_paragraph(SHIPPING_VI)

    result = extract(make_docx(build), filename="policy.docx")

    assert result.file_type == "docx"
    assert [(block.heading_path, block.text) for block in result.blocks] == [
        (("Chính sách", "Đổi trả"), REFUND_VI),
        (("Chính sách", "Đổi trả", "Hoàn tiền"), "Tiền về sau 3-5 ngày."),
        (("Chính sách", "Giao hàng"), SHIPPING_VI),
    ]
    assert all_nfc(result.blocks)


def test_docx_tables_become_rows_of_cells_and_list_items_stay_together() -> None:
    def build(document) -> None:
        document.add_heading("Bảng giá", level=1)
        table = document.add_table(rows=2, cols=2)
        for row, (name, price) in enumerate([("Gói cơ bản", "100.000đ"), ("Gói nâng cao", "250.000đ")]):
            table.cell(row, 0).text = name
            table.cell(row, 1).text = price
        document.add_paragraph("Gọi tổng đài", style="List Bullet")
        document.add_paragraph("Gửi email", style="List Bullet")

    result = extract(make_docx(build))

    assert texts(result.blocks) == [
        "Gói cơ bản | 100.000đ\nGói nâng cao | 250.000đ",
        "Gọi tổng đài\nGửi email",
    ]
    assert {block.heading_path for block in result.blocks} == {("Bảng giá",)}


def test_a_zip_bomb_dressed_as_docx_is_refused_before_unpacking() -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", "<w:document/>")
        with archive.open("word/media/padding.bin", "w") as entry:
            for _ in range(64):
                entry.write(bytes(1024 * 1024))

    assert len(bomb.getvalue()) < 200_000
    with pytest.raises(ExtractionError, match="refused for safety"):
        extract(bomb.getvalue(), filename="policy.docx")


def test_an_xlsx_unpacking_past_the_total_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zip_guard, "MAX_UNCOMPRESSED_BYTES", 1000)
    data = make_xlsx({"FAQ": [["Question", "Answer"], ["Q?", "A." * 1000]]})

    with pytest.raises(ExtractionError, match="refused for safety"):
        extract(data)


def test_a_zip_that_is_not_an_office_document_is_refused() -> None:
    archive_bytes = io.BytesIO()
    with zipfile.ZipFile(archive_bytes, "w") as archive:
        archive.writestr("notes.txt", "hello")

    with pytest.raises(ExtractionError, match="not a supported document"):
        extract(archive_bytes.getvalue(), filename="notes.docx")


def test_an_old_office_file_is_refused_with_advice_to_save_as_docx() -> None:
    with pytest.raises(ExtractionError, match=r"old-format Office file.*\.docx"):
        extract(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(2000), filename="policy.doc")


# HTML

HELP_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Trợ giúp</title><style>p{color:red}</style></head>
<body>
  <header class="site-header"><a href="/">Trang chủ</a> <a href="/lien-he">Liên hệ</a></header>
  <nav><ul><li>Menu: Sản phẩm</li><li>Menu: Khuyến mãi</li></ul></nav>
  <div class="breadcrumbs">Trang chủ / Trợ giúp</div>
  <div id="cookie-banner">Chúng tôi dùng cookie. <button>Đồng ý</button></div>
  <div class="has-sidebar">
    <h1>Đổi trả</h1>
    <p>Khách hàng được <b>hoàn tiền</b> trong vòng bảy ngày.<br>Vui lòng giữ hóa đơn.</p>
    <h2>Cách gửi hàng</h2>
    <ol><li>Đóng gói sản phẩm</li><li>Mang ra bưu cục <ul><li>Bưu điện</li></ul></li></ol>
    <table><tr><th>Gói</th><th>Phí</th></tr><tr><td>Thường</td><td>0đ</td></tr></table>
    <script>var tracking = "Không được đọc";</script>
    <aside>Bài viết liên quan</aside>
    <div style="display: none">Ẩn</div>
  </div>
  <footer>© 2024 Công ty ABC. Địa chỉ: Hà Nội</footer>
</body></html>"""


def test_html_keeps_the_content_and_drops_navigation_banners_and_footer() -> None:
    result = extract(HELP_PAGE.encode(), filename="https://help.example.com/doi-tra")

    assert result.file_type == "html"
    assert [(block.heading_path, block.text) for block in result.blocks] == [
        (("Đổi trả",), "Khách hàng được hoàn tiền trong vòng bảy ngày. Vui lòng giữ hóa đơn."),
        (("Đổi trả", "Cách gửi hàng"), "Đóng gói sản phẩm\nMang ra bưu cục\nBưu điện"),
        (("Đổi trả", "Cách gửi hàng"), "Gói | Phí\nThường | 0đ"),
    ]


def test_html_prefers_the_main_element_when_there_is_one() -> None:
    page = b"<html><body><div>Promo text</div><main><h2>FAQ</h2><p>Answer here.</p></main></body></html>"

    result = extract(page)

    assert [(block.heading_path, block.text) for block in result.blocks] == [(("FAQ",), "Answer here.")]


def test_html_in_windows_1258_is_decoded_by_its_meta_charset() -> None:
    page = f'<html><head><meta charset="windows-1258"></head><body><p>{REFUND_VI}</p></body></html>'

    result = extract(to_cp1258(page))

    assert texts(result.blocks) == [REFUND_VI]
    assert all_nfc(result.blocks)


# Markdown and plain text


def test_markdown_headings_nest_by_level() -> None:
    text = "# Chính sách\n\n## Đổi trả\n\n{}\n\n### Hoàn tiền\n\nSau 3-5 ngày.\n\n## Giao hàng\n\n{}\n"
    result = extract(text.format(REFUND_VI, SHIPPING_VI).encode(), filename="policy.md")

    assert result.file_type == "markdown"
    assert [(block.heading_path, block.text) for block in result.blocks] == [
        (("Chính sách", "Đổi trả"), REFUND_VI),
        (("Chính sách", "Đổi trả", "Hoàn tiền"), "Sau 3-5 ngày."),
        (("Chính sách", "Giao hàng"), SHIPPING_VI),
    ]


def test_markdown_lists_code_and_tables_are_kept_without_inline_markers() -> None:
    text = (
        "Setup\n=====\n\nSee [the guide](https://example.com/guide) and **read it**.\n\n"
        "- first *step*\n- second step\n  continued\n\n```\npip install app\n```\n\n"
        "| Plan | Price |\n|---|---|\n| Basic | $5 |\n"
    )

    result = extract_text(text)

    assert texts(result.blocks) == [
        "See the guide (https://example.com/guide) and read it.",
        "first step\nsecond step continued",
        "pip install app",
        "Plan | Price\nBasic | $5",
    ]
    assert {block.heading_path for block in result.blocks} == {("Setup",)}


def test_plain_text_splits_into_paragraphs_without_headings() -> None:
    result = extract(f"{REFUND_VI}\nnối dòng.\n\n\n{SHIPPING_VI}\n".encode())

    assert result.file_type == "text"
    assert [(block.heading_path, block.text) for block in result.blocks] == [
        ((), f"{REFUND_VI} nối dòng."),
        ((), SHIPPING_VI),
    ]


def test_windows_1258_vietnamese_text_is_decoded_to_nfc() -> None:
    result = extract(to_cp1258(f"{REFUND_VI}\n\n{SHIPPING_VI}\n"), filename="notes.txt")

    assert texts(result.blocks) == [REFUND_VI, SHIPPING_VI]
    assert all_nfc(result.blocks)


def test_short_windows_1258_text_is_still_decoded_as_vietnamese() -> None:
    assert texts(extract(to_cp1258("Giờ mở cửa: 8 giờ sáng.")).blocks) == ["Giờ mở cửa: 8 giờ sáng."]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig"])
def test_utf16_and_bom_marked_text_is_decoded(encoding: str) -> None:
    result = extract(f"{REFUND_VI}\n\n{SHIPPING_VI}".encode(encoding))

    assert texts(result.blocks) == [REFUND_VI, SHIPPING_VI]


def test_short_western_text_in_windows_1252_keeps_its_accents() -> None:
    result = extract("Café au lait, “quotes” and crème brûlée.".encode("cp1252"))

    assert texts(result.blocks) == ["Café au lait, “quotes” and crème brûlée."]


def test_utf8_text_with_one_damaged_byte_is_still_read_as_utf8() -> None:
    data = f"{REFUND_VI} {SHIPPING_VI}".encode()

    result = extract(data[:40] + b"\xff" + data[40:])

    assert "Vui lòng giữ hóa đơn." in result.blocks[0].text
    assert "\ufffd" not in result.blocks[0].text


def test_decomposed_vietnamese_is_normalised_to_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", REFUND_VI)

    assert texts(extract(decomposed.encode()).blocks) == [REFUND_VI]


def test_control_characters_are_dropped_and_whitespace_collapsed() -> None:
    result = extract(b"Hello\x00\x07   wor\xe2\x80\x8bld\t\tagain\r\nnext line, and some more words.\n")

    assert texts(result.blocks) == ["Hello world again next line, and some more words."]


def test_pasted_text_is_read_as_markdown_by_default() -> None:
    result = extract_text("## Liên hệ\n\nGọi 1900 1234.")

    assert [(block.heading_path, block.text) for block in result.blocks] == [(("Liên hệ",), "Gọi 1900 1234.")]


def test_pasted_plain_text_keeps_hash_lines_as_text() -> None:
    result = extract_text("# not a heading\n\nBody.", file_type="text")

    assert texts(result.blocks) == ["# not a heading", "Body."]


def test_pasted_text_of_an_unknown_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="extract_text reads"):
        extract_text("Hello", file_type="pdf")


# Refusals


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(ExtractionError, match="The file is empty"):
        extract(b"")


def test_a_file_with_only_whitespace_has_no_text() -> None:
    with pytest.raises(ExtractionError, match="No text could be extracted"):
        extract(b" \n\t\n ")


def test_empty_pasted_text_is_refused() -> None:
    with pytest.raises(ExtractionError, match="The text is empty"):
        extract_text("  \n")


def test_a_file_over_the_size_limit_is_refused_with_the_limit_in_mb() -> None:
    with pytest.raises(ExtractionError, match="larger than the 2 MB limit"):
        extract(b"a" * (2 * 1024 * 1024 + 1), max_bytes=2 * 1024 * 1024)


def test_binary_garbage_is_refused_as_not_a_supported_document() -> None:
    garbage = random.Random(7).randbytes(5000)

    with pytest.raises(ExtractionError, match="not a supported document"):
        extract(garbage, filename="notes.txt")


def test_an_image_is_refused_as_an_image() -> None:
    with pytest.raises(ExtractionError, match="This is an image"):
        extract(b"\x89PNG\r\n\x1a\n" + bytes(100), filename="scan.pdf")


def test_damaged_and_truncated_files_only_ever_raise_extraction_errors() -> None:
    rng = random.Random(42)
    samples = [
        make_pdf([(None, "", "Some text for the fuzzer.")]),
        make_docx(lambda document: document.add_paragraph("Some text for the fuzzer.")),
        make_xlsx({"FAQ": [["Question", "Answer"], ["Why?", "Because."]]}),
        HELP_PAGE.encode(),
    ]
    for sample in samples:
        for _ in range(25):
            damaged = bytearray(sample[: rng.randrange(1, len(sample) + 1)])
            for _ in range(rng.randrange(0, 8)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            try:
                extract(bytes(damaged))
            except ExtractionError as error:
                assert str(error)


# FAQ sheets


def test_csv_faq_with_vietnamese_headers_gives_one_pair_and_one_faq_block_per_row() -> None:
    data = "Câu hỏi;Trả lời\nMấy giờ mở cửa?;8 giờ sáng đến 6 giờ chiều.\nCó giao hàng không?;Có, toàn quốc."

    result = extract(data.encode(), filename="faq.csv")

    assert result.file_type == "csv"
    assert result.faq_pairs == [
        FaqPair("Mấy giờ mở cửa?", "8 giờ sáng đến 6 giờ chiều."),
        FaqPair("Có giao hàng không?", "Có, toàn quốc."),
    ]
    assert result.blocks == [
        Block("Mấy giờ mở cửa?\n8 giờ sáng đến 6 giờ chiều.", (), is_faq=True),
        Block("Có giao hàng không?\nCó, toàn quốc.", (), is_faq=True),
    ]


def test_csv_headers_match_without_diacritics_or_case_and_extra_columns_are_ignored() -> None:
    data = b"ID,CAU HOI,Category,tra loi\n1,Is it free?,billing,Yes.\n2,,billing,Orphan.\n3,Unanswered?,x,\n"

    result = extract(data)

    assert result.faq_pairs == [FaqPair("Is it free?", "Yes.")]


def test_a_two_column_csv_without_known_headers_reads_question_then_answer() -> None:
    data = "Mấy giờ mở cửa?,8 giờ sáng.\nCó chỗ đậu xe?,Có.\n".encode()

    result = extract(data, filename="faq.csv")

    assert result.faq_pairs == [FaqPair("Mấy giờ mở cửa?", "8 giờ sáng."), FaqPair("Có chỗ đậu xe?", "Có.")]


def test_a_csv_without_question_and_answer_columns_names_the_expected_columns() -> None:
    with pytest.raises(ExtractionError, match='"Question" and "Answer" \\(or "Câu hỏi" and "Trả lời"\\)'):
        extract(b"name,price,stock\nBasic,5,10\n", filename="prices.csv")


def test_xlsx_faq_sheets_are_read_with_the_sheet_name_as_heading() -> None:
    data = make_xlsx(
        {
            "Giao hàng": [["Câu hỏi", "Câu trả lời"], ["Phí giao hàng?", "Miễn phí từ 300.000đ."], [None]],
            "Ghi chú": [["Nội dung"], ["Không phải FAQ"]],
            "Sheet3": [["Question", "Answer"], ["Refunds?", "Within 7 days.\nKeep the receipt."]],
        }
    )

    result = extract(data, filename="faq.xlsx")

    assert result.file_type == "xlsx"
    assert result.faq_pairs == [
        FaqPair("Phí giao hàng?", "Miễn phí từ 300.000đ."),
        FaqPair("Refunds?", "Within 7 days.\nKeep the receipt."),
    ]
    assert result.blocks == [
        Block("Phí giao hàng?\nMiễn phí từ 300.000đ.", ("Giao hàng",), is_faq=True),
        Block("Refunds?\nWithin 7 days.\nKeep the receipt.", (), is_faq=True),
    ]


def test_an_xlsx_title_row_above_the_header_is_skipped() -> None:
    rows = [["Câu hỏi thường gặp 2024"], [], ["STT", "Câu hỏi", "Trả lời"], [1, "Đổi trả?", "7 ngày."]]
    data = make_xlsx({"Sheet1": rows})

    result = extract(data)

    assert result.faq_pairs == [FaqPair("Đổi trả?", "7 ngày.")]
    assert result.blocks == [Block("Đổi trả?\n7 ngày.", (), is_faq=True)]


def test_an_xlsx_without_question_and_answer_columns_is_refused_with_the_expected_names() -> None:
    data = make_xlsx({"Prices": [["Plan", "Price", "Stock"], ["Basic", 5, 10]]})

    with pytest.raises(ExtractionError, match=r'No sheet .* "Question" and "Answer"'):
        extract(data)
