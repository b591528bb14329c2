"""Signed identities: the shop's server vouches for a customer with an HMAC of their id."""

import hashlib
import hmac
import uuid

import pytest

from chatbot.models import Bot
from chatbot.widget.errors import WidgetError
from chatbot.widget.identity import identity_resolve, identity_sign, identity_verify
from tests.knowledge.helpers import make_knowledge_base


@pytest.fixture
def bot(db) -> Bot:
    return Bot.objects.create(name="Shop", slug="shop", knowledge_base=make_knowledge_base("Shop"))


def test_the_signature_is_hex_hmac_sha256_of_the_utf8_user_id():
    # RFC 4231-style check against the well-known example, then a non-ASCII id.
    assert (
        identity_sign(secret="key", user_id="The quick brown fox jumps over the lazy dog")
        == "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )
    expected = hmac.new(b"s3cret", "khách-42".encode(), hashlib.sha256).hexdigest()
    assert identity_sign(secret="s3cret", user_id="khách-42") == expected


def test_a_hash_verifies_in_either_case_and_only_for_its_own_id_and_secret():
    good = identity_sign(secret="s3cret", user_id="42")

    assert identity_verify(secret="s3cret", user_id="42", user_hash=good)
    assert identity_verify(secret="s3cret", user_id="42", user_hash=good.upper())
    assert not identity_verify(secret="s3cret", user_id="43", user_hash=good)
    assert not identity_verify(secret="other", user_id="42", user_hash=good)
    assert not identity_verify(secret="s3cret", user_id="42", user_hash="")
    assert not identity_verify(secret="", user_id="42", user_hash=identity_sign(secret="", user_id="42"))


def test_a_visitor_is_a_canonical_uuid(bot):
    visitor = uuid.uuid4()

    resolved = identity_resolve(bot=bot, visitor_id=str(visitor).upper(), display_name="Claimed name")

    assert resolved.external_id == f"visitor:{visitor}"
    assert resolved.display_name == ""  # an anonymous page's claim is not stored
    assert not resolved.is_user


def test_a_verified_customer_is_their_user_id_with_their_name(bot):
    user_hash = identity_sign(secret=bot.widget_identity_secret, user_id="42")

    resolved = identity_resolve(
        bot=bot, visitor_id="", user_id="42", user_hash=user_hash, display_name=" Lan "
    )

    assert resolved.external_id == "user:42"
    assert resolved.display_name == "Lan"
    assert resolved.is_user


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"visitor_id": "", "user_id": "42", "user_hash": "00" * 32}, "invalid_identity"),
        ({"visitor_id": str(uuid.uuid4()), "user_id": "42", "user_hash": ""}, "invalid_identity"),
        ({"visitor_id": str(uuid.uuid4()), "user_id": "", "user_hash": "ab" * 32}, "invalid_user_id"),
        ({"visitor_id": "", "user_id": "x" * 196, "user_hash": "ab"}, "invalid_user_id"),
        ({"visitor_id": "", "user_id": "4\n2", "user_hash": "ab"}, "invalid_user_id"),
        ({"visitor_id": "12345"}, "invalid_visitor"),
        ({"visitor_id": ""}, "invalid_visitor"),
    ],
)
def test_an_identity_that_cannot_be_trusted_is_refused_with_its_code(bot, fields, code):
    with pytest.raises(WidgetError) as refused:
        identity_resolve(bot=bot, **fields)

    assert refused.value.code == code
