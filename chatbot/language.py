"""Which language a customer wrote in, and whether they are asking for a person.

Both run on every message before anything expensive, so they are word lists, not
models. Vietnamese is recognised by its diacritics, or, typed without them, by its
function words.
"""

import re
import unicodedata

from knowledge.textnorm import fold

# Folded words far more common in one language's customer messages than the other's.
VIETNAMESE_WORDS = frozenset(
    {
        "khong", "ko", "k", "gi", "j", "bao", "nhieu", "toi", "minh", "ban", "cua", "gio", "mo", "cho",
        "nao", "duoc", "dc", "co", "lam", "sao", "em", "anh", "chi", "oi", "nhe", "nha", "vay", "giao",
        "hang", "don", "tra", "doi", "thanh", "toan", "phi", "mua", "ship", "tien", "ngay", "may",
        "cai", "nay", "kia", "thi", "la", "va", "voi", "o", "dau", "muon", "hoi", "xin", "cam", "on",
        "ah", "u", "roi", "chua", "tai", "khoan", "vien",
    }
)  # fmt: skip
ENGLISH_WORDS = frozenset(
    {
        "the", "is", "are", "what", "how", "do", "does", "you", "can", "i", "my", "to", "of", "when",
        "where", "your", "please", "hi", "hello", "thanks", "thank", "open", "delivery", "return", "order",
        "price", "much", "many", "have", "will", "would", "could", "there", "it", "in", "on", "for", "and",
        "store", "time", "hours", "payment", "pay", "membership", "refund",
    }
)  # fmt: skip

_WORD = re.compile(r"\w+")

# Asking for a person, folded. Phrases, not single words: "nhân viên giao hàng" (the
# courier) or "the agent said" must not hand the conversation over.
_HUMAN_REQUEST = re.compile(
    r"\b(?:"
    r"(?:gap|noi chuyen (?:voi|vs)|ket noi (?:voi|vs)?|chuyen (?:cho|sang|qua)"
    r"|cho (?:toi|minh|em|tui) gap|can|muon gap|goi)"
    r" (?:\w+ ){0,2}(?:nhan vien|nguoi that|tu van vien|cskh|admin|nguoi ho tro)"
    r"|(?:talk|speak|chat|connect me|put me through)(?: \w+){0,3} (?:to|with) (?:a |an |the )?"
    r"(?:human|person|agent|operator|representative|staff|someone|real person|people)"
    r"|^(?:human|agent|operator|nhan vien|nguoi that|tu van vien|representative)(?: please| oi| a| nhe)?$"
    r"|\b(?:human|live) agent\b"
    r")"
)

_GREETING = re.compile(
    r"^(?:xin chao|chao|alo|hi|hello|hey|good (?:morning|afternoon|evening)|helo)"
    r"(?: (?:shop|ban|em|anh|chi|ad|admin|a|nhe|nha|there|everyone|bot))*$"
)


def detect_language(text: str, *, allowed: list[str], fallback: str) -> str:
    """ "vi" or "en" (whichever `allowed` holds) for `text`; `fallback` when the text does not say."""
    if len(allowed) == 1:
        return allowed[0]
    guess = _guess(text)
    return guess if guess in allowed else fallback


def _guess(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.lower())
    # Vietnamese-only letters and tone marks: đ, horn (ơ ư), breve (ă), hook above, dot below...
    if "đ" in text.lower() or any(unicodedata.combining(char) for char in decomposed):
        return "vi"
    words = _WORD.findall(fold(text))
    vietnamese = sum(word in VIETNAMESE_WORDS for word in words)
    english = sum(word in ENGLISH_WORDS for word in words)
    if vietnamese > english:
        return "vi"
    if english > vietnamese:
        return "en"
    return ""


def asks_for_human(text: str) -> bool:
    return bool(_HUMAN_REQUEST.search(fold(text)))


def is_greeting(text: str) -> bool:
    """A bare hello, which deserves the bot's greeting rather than a search of the knowledge base."""
    return bool(_GREETING.match(fold(text)))
