"""Allowed origins: read one way (as browsers send Origin), wherever they come from."""

import pytest

from chatbot.widget.origins import InvalidOrigin, origin_normalize, origins_allowed, origins_parse


@pytest.mark.parametrize(
    ("written", "origin"),
    [
        ("https://shop.example.com", "https://shop.example.com"),
        ("HTTPS://Shop.Example.COM/", "https://shop.example.com"),
        ("  https://shop.example.com  ", "https://shop.example.com"),
        ("https://shop.example.com:443", "https://shop.example.com"),
        ("http://shop.example.com:80", "http://shop.example.com"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("https://shop.example.com:8443", "https://shop.example.com:8443"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("https://cửahàng.vn", "https://xn--cahng-tqa2694c.vn"),  # as a browser's URL parser writes it
    ],
)
def test_an_origin_is_written_as_a_browser_sends_it(written, origin):
    assert origin_normalize(written) == origin


@pytest.mark.parametrize(
    ("written", "complaint"),
    [
        ("shop.example.com", "needs its scheme"),
        ("ftp://shop.example.com", "http:// or https://"),
        ("https://shop.example.com/chat", "without a path"),
        ("https://shop.example.com/?a=1", "without a path"),
        ("https://user:pw@shop.example.com", "user name or password"),
        ("https://*.example.com", "no wildcards"),
        ("https://shop.example.com:99999", "not a valid origin"),
        ("https://", "one exact host"),
    ],
)
def test_what_is_not_an_origin_is_refused_with_the_reason(written, complaint):
    with pytest.raises(InvalidOrigin, match=complaint):
        origin_normalize(written)


def test_a_list_is_normalised_without_blank_lines_or_repeats():
    text = "https://shop.example.com\n\nHTTPS://SHOP.example.com/\r\nhttp://localhost:3000\n"

    assert origins_parse(text) == ["https://shop.example.com", "http://localhost:3000"]


def test_every_bad_line_is_named_by_its_number():
    with pytest.raises(InvalidOrigin) as refused:
        origins_parse(
            "https://shop.example.com\nshop.example.org\nhttps://ok.example\nhttps://x.example/path"
        )

    assert "line 2" in str(refused.value) and "line 4" in str(refused.value)
    assert "line 1" not in str(refused.value) and "line 3" not in str(refused.value)


def test_stored_text_with_a_bad_line_allows_the_good_lines_only():
    allowed = origins_allowed("https://shop.example.com\nnot an origin\nhttp://localhost:3000/")

    assert allowed == {"https://shop.example.com", "http://localhost:3000"}


def test_empty_text_allows_nothing():
    assert origins_allowed("") == frozenset()
