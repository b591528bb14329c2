"""The extractive provider: cited excerpts from the ranked sources, no LLM. No database."""

import pytest

from chatbot.llm import Generation, GenerationRequest, Message, NoSources, Source, get_provider
from chatbot.llm.extractive import LABELS, MAX_SENTENCE_CHARS, answer

HOURS = Source(
    number=1,
    title="Giờ mở cửa",
    heading="Cửa hàng Quận 1",
    text=(
        "# Giờ mở cửa\n"
        "Cửa hàng Quận 1 nằm trên đường Lê Lợi, gần chợ Bến Thành. "
        "Chúng tôi mở cửa từ 8 giờ sáng đến 10 giờ tối tất cả các ngày trong tuần. "
        "Bãi giữ xe máy miễn phí cho khách hàng."
    ),
)
RETURNS = Source(
    number=2,
    title="Chính sách đổi trả",
    heading="",
    text="Sản phẩm được đổi trả trong 30 ngày nếu còn hóa đơn. Hàng giảm giá không được đổi trả.",
)
FAQ = Source(
    number=3,
    title="Câu hỏi thường gặp",
    heading="Giao hàng",
    text=(
        "Hỏi: Phí giao hàng nội thành là bao nhiêu?\n"
        "Đáp: Mỗi đơn nội thành trả 20.000 đồng, đơn từ 500.000 đồng được miễn phí.\n"
        "Hỏi: Có giao hàng vào Chủ nhật không?\n"
        "Đáp: Có, chúng tôi giao cả tuần."
    ),
)
SHIPPING_EN = Source(
    number=1,
    title="Shipping",
    heading="Delivery times",
    text="Orders placed before noon ship the same day. Delivery inside the city takes one to two days.",
)


def ask(question: str, sources: list[Source], language: str = "vi") -> GenerationRequest:
    return GenerationRequest(
        system="", messages=[Message("user", question)], model="", sources=sources, language=language
    )


def test_extractive_quotes_the_sentence_matching_a_question_typed_without_diacritics():
    text = get_provider("extractive").generate(ask("cua hang mo cua may gio", [HOURS, RETURNS])).text

    assert text == (
        "Trích từ tài liệu (trả lời tự động):\n"
        "«Chúng tôi mở cửa từ 8 giờ sáng đến 10 giờ tối tất cả các ngày trong tuần.» [1]\n"
        "\n"
        "Nguồn:\n"
        "[1] Giờ mở cửa \u2014 Cửa hàng Quận 1"
    )


def test_extractive_matches_words_typed_with_diacritics_exactly():
    # "mấy" (how many) must not pull in the sentence about "xe máy" (motorbikes).
    text = answer("Cửa hàng mở cửa lúc mấy giờ?", [HOURS])

    assert text.splitlines()[1:-3] == [
        "«Chúng tôi mở cửa từ 8 giờ sáng đến 10 giờ tối tất cả các ngày trong tuần.» [1]"
    ]


def test_extractive_answers_in_english_with_an_english_label():
    text = answer("How long does delivery inside the city take?", [SHIPPING_EN], language="en")

    assert text.startswith(LABELS["en"][0] + "\n")
    assert "“Delivery inside the city takes one to two days.” [1]" in text
    assert text.endswith("Sources:\n[1] Shipping \u2014 Delivery times")


def test_extractive_uses_english_wording_for_a_language_it_does_not_know():
    assert answer("When do orders ship?", [SHIPPING_EN], language="fr").startswith(LABELS["en"][0])
    assert answer("When do orders ship?", [SHIPPING_EN], language="vi-VN").startswith(LABELS["vi"][0])


def test_extractive_prefers_the_better_matching_passage_even_when_it_is_ranked_lower():
    text = answer("Tôi đổi trả hàng trong bao nhiêu ngày?", [HOURS, RETURNS])

    assert "«Sản phẩm được đổi trả trong 30 ngày nếu còn hóa đơn.» [2]" in text
    assert "[1]" not in text
    assert text.endswith("Nguồn:\n[2] Chính sách đổi trả")


def test_extractive_quotes_two_sentences_from_two_sources_in_rank_order_when_both_match():
    text = answer("Giờ mở cửa và chính sách đổi trả hàng giảm giá?", [HOURS, RETURNS])

    lines = text.splitlines()
    assert lines[1].endswith("[1]")
    assert lines[2] == "«Hàng giảm giá không được đổi trả.» [2]"
    assert lines[-2:] == ["[1] Giờ mở cửa \u2014 Cửa hàng Quận 1", "[2] Chính sách đổi trả"]


def test_extractive_quotes_a_faq_answer_rather_than_its_question():
    text = answer("phi giao hang noi thanh bao nhieu", [FAQ])

    assert "«Đáp: Mỗi đơn nội thành trả 20.000 đồng, đơn từ 500.000 đồng được miễn phí.» [3]" in text
    assert "Hỏi:" not in text


def test_extractive_quotes_the_top_passage_opening_when_no_word_matches():
    text = answer("What time do you open?", [HOURS, RETURNS], language="en")

    assert "“Cửa hàng Quận 1 nằm trên đường Lê Lợi, gần chợ Bến Thành.” [1]" in text
    assert "“Chúng tôi mở cửa từ 8 giờ sáng đến 10 giờ tối tất cả các ngày trong tuần.” [1]" in text
    assert "[2]" not in text


def test_extractive_shortens_a_very_long_sentence_at_a_word_boundary():
    long_text = "Bảo hành " + " ".join(["chính hãng"] * 200) + "."
    source = Source(number=4, title="Bảo hành", heading="", text=long_text)

    quoted = answer("bảo hành chính hãng", [source]).splitlines()[1]

    assert quoted.endswith("…» [4]")
    assert len(quoted) <= MAX_SENTENCE_CHARS + len("«…» [4]")


def test_extractive_without_sources_raises_no_sources():
    with pytest.raises(NoSources):
        get_provider("extractive").generate(ask("Giờ mở cửa?", []))


def test_extractive_generation_costs_no_tokens():
    generation = get_provider("extractive").generate(ask("Giờ mở cửa?", [HOURS]))

    assert (generation.provider, generation.model, generation.finish_reason) == (
        "extractive",
        "extractive",
        "stop",
    )
    assert generation.usage.total_tokens == 0


def test_extractive_stream_yields_the_answer_line_by_line_then_the_generation():
    items = list(get_provider("extractive").stream(ask("Giờ mở cửa?", [HOURS, RETURNS])))

    *pieces, final = items
    assert isinstance(final, Generation)
    assert len(pieces) > 1
    assert all(isinstance(piece, str) for piece in pieces)
    assert "".join(pieces) == final.text
