"""Which questions the answer cache may keep, and the key an exact match is made on."""

import pytest

from chatbot.answer_cache import is_cacheable_question, normalize_question


def test_case_diacritics_punctuation_and_spacing_fold_to_one_key():
    assert normalize_question("Giờ mở cửa?") == normalize_question("  gio   MO cua ") == "gio mo cua"
    assert normalize_question("Đổi trả, hoàn tiền!!") == "doi tra hoan tien"


def test_a_question_of_only_punctuation_has_no_key_and_is_not_cacheable():
    assert normalize_question("?!...") == ""
    assert not is_cacheable_question(question="?!", has_history=False)


@pytest.mark.parametrize(
    "question",
    [
        "Giờ mở cửa?",
        "gio mo cua",
        "What are your opening hours?",
        "How long do refunds take?",
        "Phí giao hàng bao nhiêu?",
        "Đơn hàng từ 500.000đ có được miễn phí giao hàng không?",
        "Do orders over 1.000.000 VND ship free?",
        "Can I pay with a card worth $15?",
        "Chính sách đổi trả thế nào?",
        "Hôm nay cửa hàng có mở cửa không?",
    ],
)
def test_general_questions_are_cacheable_with_or_without_history(question):
    assert is_cacheable_question(question=question, has_history=False)
    assert is_cacheable_question(question=question, has_history=True)


@pytest.mark.parametrize(
    "question",
    [
        "Where is my order?",
        "Can you check my account balance?",
        "I ordered a jacket last week, when will it come?",
        "Đơn hàng của tôi đến đâu rồi?",
        "đơn hàng của em sao chưa giao",
        "Đơn của mình bị huỷ à?",
        "Tài khoản của tôi bị khoá",
        "tài khoản mình đăng nhập không được",
        "Em đã đặt 2 áo hôm qua",
        "Order #48213 has not arrived",
        "mã đơn DH123456 giao chưa",
        "Số điện thoại của tôi là 0901 234 567",
        "gọi cho mình qua +84 90 123 4567 nhé",
        "My email is lan.nguyen@example.com, please reply there",
        "Tracking number 7781 2234 5561?",
    ],
)
def test_personal_questions_are_never_cacheable(question):
    assert not is_cacheable_question(question=question, has_history=False)


@pytest.mark.parametrize(
    "question",
    [
        "what about the red one?",
        "How much is it?",
        "And delivery?",
        "Does that include weekends?",
        "còn cái kia thì sao",
        "nó giá bao nhiêu",
        "Giá bao nhiêu?",
        "Vậy thì sao?",
        "why?",
        "loại này có size M không",
    ],
)
def test_follow_ups_are_not_cacheable_once_the_conversation_has_history(question):
    assert not is_cacheable_question(question=question, has_history=True)


def test_the_same_short_question_opening_a_conversation_is_cacheable():
    # Without history there is nothing for "giá bao nhiêu" to lean on: it stands alone.
    assert is_cacheable_question(question="Giá bao nhiêu?", has_history=False)
    assert is_cacheable_question(question="How much is it?", has_history=False)
