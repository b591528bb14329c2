"""Text folding for keyword search: case, diacritics and punctuation.

Vietnamese users often type without diacritics ("gio mo cua" for "giờ mở cửa"), so
both the indexed text and the query are folded the same way before PostgreSQL sees
them. PostgreSQL's `simple` configuration then only lower-cases and splits, with no
English stemmer to mangle Vietnamese syllables.
"""

import re
import unicodedata

_WORD = re.compile(r"\w+", re.UNICODE)

# Words so common that matching them says nothing. Folding merges Vietnamese words
# ("của" of / "cửa" door both become "cua"; "the" is also "thẻ", card), so only
# folded forms that are almost never a content word in either language are listed.
STOPWORDS = frozenset(
    {
        # English
        "and", "are", "does", "for", "from", "how", "is", "of", "our", "this", "what", "when",
        "where", "which", "who", "why", "will", "with", "your",
        # Vietnamese, folded
        "la", "cac", "khong", "thi", "nhung", "mot", "nhu", "duoc", "nay", "va", "gi",
    }
)  # fmt: skip


def fold(text: str) -> str:
    """Lower-case, strip diacritics (đ -> d) and keep only word characters and spaces."""
    decomposed = unicodedata.normalize("NFD", text.lower().replace("đ", "d"))
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(_WORD.findall(stripped))


def query_terms(text: str) -> list[str]:
    """Folded, de-duplicated query words without stopwords (all words if only stopwords)."""
    words = list(dict.fromkeys(fold(text).split()))
    meaningful = [word for word in words if word not in STOPWORDS]
    return meaningful or words
