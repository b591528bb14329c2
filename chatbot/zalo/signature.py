"""Zalo's webhook signature (specs/zalo-oa.md §2.2-2.4).

    X-ZEvent-Signature: mac=<hex>,  hex = SHA-256(app_id + raw_body + timestamp + oa_secret_key)

A plain hash of a concatenation, not an HMAC, keyed with the OA Secret Key (not the
App Secret). It is computed over the bytes received: re-serialising the parsed JSON
changes them (spacing, \\u escapes) and the mac no longer matches.
"""

import hashlib
import hmac

HEADER = "X-ZEvent-Signature"


def signature_of(*, app_id: str, raw_body: bytes, timestamp: str, oa_secret_key: str) -> str:
    """The lowercase hex mac Zalo sends for this body."""
    signed = app_id.encode() + raw_body + timestamp.encode() + oa_secret_key.encode()
    return hashlib.sha256(signed).hexdigest()


def signature_matches(
    *, header: str | None, app_id: str, raw_body: bytes, timestamp: str | int, oa_secret_key: str
) -> bool:
    """Whether `header` ("mac=<hex>" or bare hex, any case) signs this body; constant time."""
    if not header or not oa_secret_key:
        return False
    received = header.strip()
    if received[:4].lower() == "mac=":
        received = received[4:].strip()
    # A number in the body is signed as its decimal digits (spec §2.4 note).
    expected = signature_of(
        app_id=app_id, raw_body=raw_body, timestamp=str(timestamp), oa_secret_key=oa_secret_key
    )
    return hmac.compare_digest(expected.encode(), received.lower().encode("ascii", "replace"))
