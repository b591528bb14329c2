"""Fetch a web page for a URL document: http(s) only, bounded in time and size."""

from urllib.parse import urlsplit

import requests

CONNECT_TIMEOUT = 5
READ_TIMEOUT = 20


class FetchError(Exception):
    """The page could not be fetched; the message is meant for support staff."""


def fetch_url(url: str, *, max_bytes: int) -> bytes:
    if urlsplit(url).scheme not in {"http", "https"}:
        raise FetchError("Only http:// and https:// addresses can be fetched.")
    try:
        with requests.get(
            url,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            stream=True,
            headers={"User-Agent": "SupportBot-Knowledge/1.0"},
        ) as response:
            if response.status_code != 200:
                raise FetchError(f"The page answered HTTP {response.status_code}; check the address.")
            data = bytearray()
            for piece in response.iter_content(64 * 1024):
                data.extend(piece)
                if len(data) > max_bytes:
                    raise FetchError(f"The page is larger than the {max_bytes // 1_048_576} MB limit.")
            return bytes(data)
    except requests.RequestException as error:
        raise FetchError(f"The page could not be fetched ({type(error).__name__}).") from None
