"""The webhook signature against the worked example of specs/zalo-oa.md §2.4."""

import hashlib
import hmac
import json

import pytest

from chatbot.zalo.signature import signature_matches, signature_of

APP_ID = "1234567890123456789"
OA_SECRET_KEY = "TestOaSecretKey0001"
APP_SECRET = "TestAppSecretKey0001"
RAW_BODY = (
    '{"app_id":"1234567890123456789","sender":{"id":"2468458835296197922"},"user_id_by_app":'
    '"5521772797175877301","recipient":{"id":"3886132808788086451"},"event_name":"user_send_text",'
    '"message":{"text":"Xin chào","msg_id":"96d3cdf3af150460909a"},"timestamp":"1732345678901"}'
).encode()
TIMESTAMP = "1732345678901"
EXPECTED = "b8973e86c2423214648bac1af19bac63513e301dd8517b5d5141138b36716e67"


def matches(header: str | None, raw_body: bytes = RAW_BODY, **changes) -> bool:
    arguments = {"app_id": APP_ID, "timestamp": TIMESTAMP, "oa_secret_key": OA_SECRET_KEY, **changes}
    return signature_matches(header=header, raw_body=raw_body, **arguments)


def test_the_spec_body_is_the_271_bytes_it_describes():
    assert len(RAW_BODY) == 271


def test_the_signature_of_the_spec_example_is_the_one_zalo_sends():
    assert signature_of(
        app_id=APP_ID, raw_body=RAW_BODY, timestamp=TIMESTAMP, oa_secret_key=OA_SECRET_KEY
    ) == (EXPECTED)


@pytest.mark.parametrize(
    "header", [f"mac={EXPECTED}", EXPECTED, f"  MAC= {EXPECTED.upper()} ", f"Mac={EXPECTED}"]
)
def test_the_header_is_accepted_with_or_without_its_mac_prefix_in_any_case(header):
    assert matches(header)


def test_a_numeric_timestamp_is_signed_as_its_digits():
    assert matches(f"mac={EXPECTED}", timestamp=int(TIMESTAMP))


@pytest.mark.parametrize(
    "forged",
    [
        # HMAC-SHA256 of the body keyed with the OA secret (spec §2.4 negative vector)
        "92b463c980632dae35d0c6ff509e1abcfb871dd428c5e01ca53c991dde7f8b32",
        # the right formula with the App Secret instead of the OA Secret Key
        "9cabb820210710129f46b09cdc85fd59482da235d388af23e9da26cf454b2a8a",
        # the event re-serialised with \u00e0 escapes
        "a1fc155b43a0a2be96b74cdb326c04b12537a8d92dbac105c612f41dce37a1ba",
    ],
)
def test_the_specs_negative_vectors_are_refused(forged):
    assert not matches(f"mac={forged}")


def test_the_negative_vectors_are_what_the_spec_says_they_are():
    reserialised = json.dumps(json.loads(RAW_BODY)).encode()

    assert hmac.new(OA_SECRET_KEY.encode(), RAW_BODY, hashlib.sha256).hexdigest().startswith("92b463c9")
    assert signature_of(
        app_id=APP_ID, raw_body=RAW_BODY, timestamp=TIMESTAMP, oa_secret_key=APP_SECRET
    ).startswith("9cabb820")
    assert "\\u00e0" in reserialised.decode()
    assert signature_of(
        app_id=APP_ID, raw_body=reserialised.replace(b", ", b",").replace(b": ", b":"), timestamp=TIMESTAMP,
        oa_secret_key=OA_SECRET_KEY,
    ).startswith("a1fc155b")  # fmt: skip


def test_a_tampered_body_no_longer_matches():
    assert not matches(f"mac={EXPECTED}", RAW_BODY.replace(b"Xin ch", b"Xin CH"))


def test_the_oa_id_in_place_of_the_app_id_does_not_match():
    assert not matches(f"mac={EXPECTED}", app_id="3886132808788086451")


@pytest.mark.parametrize(
    "header", [None, "", "mac=", "mac=not-hex-at-all", f"mac={EXPECTED[:-1]}", "mac=é" * 3]
)
def test_a_missing_or_malformed_header_does_not_match(header):
    assert not matches(header)


def test_an_empty_oa_secret_key_never_matches():
    empty_key_mac = signature_of(app_id=APP_ID, raw_body=RAW_BODY, timestamp=TIMESTAMP, oa_secret_key="")

    assert not matches(f"mac={empty_key_mac}", oa_secret_key="")
