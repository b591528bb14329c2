"""Language detection, requests for a person and greetings: word rules, no model."""

import pytest

from chatbot.language import asks_for_human, detect_language, is_greeting

BOTH = ["vi", "en"]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Cửa hàng mở cửa lúc mấy giờ?", "vi"),
        ("gio mo cua la may gio vay shop", "vi"),
        ("phi ship bao nhieu", "vi"),
        ("What time do you open?", "en"),
        ("How much is delivery to District 7?", "en"),
    ],
)
def test_it_tells_vietnamese_from_english_with_or_without_diacritics(text, language):
    assert detect_language(text, allowed=BOTH, fallback="vi") == language


def test_it_falls_back_when_the_text_does_not_say():
    assert detect_language("iPhone 15", allowed=BOTH, fallback="en") == "en"


def test_a_bot_with_one_language_always_answers_in_it():
    assert detect_language("What time do you open?", allowed=["vi"], fallback="vi") == "vi"


@pytest.mark.parametrize(
    "text",
    [
        "Cho mình gặp nhân viên tư vấn",
        "cho toi gap nguoi that",
        "muốn nói chuyện với nhân viên",
        "I want to talk to a human",
        "Can I speak with a real person please",
        "agent",
        "nhân viên ơi",
    ],
)
def test_it_recognises_a_request_for_a_person(text):
    assert asks_for_human(text)


@pytest.mark.parametrize(
    "text",
    [
        "Nhân viên giao hàng đến lúc mấy giờ?",
        "The delivery agent was late",
        "What time do you open?",
        "Phí giao hàng bao nhiêu?",
    ],
)
def test_it_does_not_hand_over_for_questions_that_only_mention_staff(text):
    assert not asks_for_human(text)


@pytest.mark.parametrize("text", ["xin chào", "Chào shop!", "hello", "Hi there"])
def test_a_bare_hello_is_a_greeting(text):
    assert is_greeting(text)


@pytest.mark.parametrize("text", ["xin chào, shop mở cửa mấy giờ?", "hello, how much is delivery?"])
def test_a_hello_with_a_question_is_not_only_a_greeting(text):
    assert not is_greeting(text)
