"""Blocks -> chunks sized in the embedding model's own tokens, stable under small edits.

Chunks never mix heading paths, start with their heading path line, and an FAQ block
is always exactly one chunk. Re-ingestion re-embeds only chunks whose hash changed,
so chunk boundaries must not depend on everything before them, as greedy packing
from the top of a section does (one longer paragraph would shift every later
boundary). Instead a section that does not fit is cut before its highest-ranked
paragraph, each side likewise, until every part fits (see `_fit`). A paragraph's
rank is a hash of its first RANK_CHARS characters, so an edit that leaves those alone
changes the chunk holding the paragraph and at most one neighbour; an edit to the
opening itself can also move a nearby cut (a few chunks, rarely more). The price is
fill: chunks average a little over half of `chunk_tokens`.

A block too long for one chunk is cut the same way between its sentences, and only
there does overlap repeat the last sentences of the previous chunk; boundaries
between whole paragraphs are natural breaks, and overlap across them would make an
edit change two chunks instead of one.
"""

import hashlib
import itertools
import re
from dataclasses import dataclass, field

from knowledge.embedding.local import count_passage_tokens
from knowledge.ingest.extract import Block

MIN_CHUNK_TOKENS = 32
RANK_CHARS = 32  # a paragraph's rank comes from its opening, so edits further in keep it
HEADING_SEPARATOR = " > "

_SENTENCE_BREAK = re.compile("(?<=[.!?…])\\s+|(?<=[.!?…][\"'\u201d\u2019\u00bb)\\]])\\s+")


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
    rank: bytes = field(init=False)  # pseudo-random, from the opening words alone

    def __post_init__(self) -> None:
        opening = self.text[:RANK_CHARS].encode("utf-8")
        object.__setattr__(self, "rank", hashlib.sha256(opening).digest()[:8])


def count_tokens(text: str) -> int:
    """Tokens the embedding model sees for `text` as a passage, prefix and special tokens included."""
    return count_passage_tokens(text)


def split_blocks(
    blocks: list[Block], *, chunk_tokens: int = 350, overlap_tokens: int = 50
) -> list[ChunkDraft]:
    """Chunks in document order; each holds at most chunk_tokens tokens unless it is one FAQ pair."""
    if chunk_tokens < MIN_CHUNK_TOKENS:
        raise ValueError(f"chunk_tokens must be at least {MIN_CHUNK_TOKENS}, not {chunk_tokens}")
    if overlap_tokens < 0:
        raise ValueError(f"overlap_tokens must not be negative, not {overlap_tokens}")
    drafts: list[ChunkDraft] = []
    for heading_path, section in itertools.groupby(blocks, key=lambda block: block.heading_path):
        for text, token_count in _section_chunks(heading_path, list(section), chunk_tokens, overlap_tokens):
            drafts.append(
                ChunkDraft(
                    position=len(drafts),
                    text=text,
                    heading_path=heading_path,
                    token_count=token_count,
                    content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                )
            )
    return drafts


def _section_chunks(
    heading_path: tuple[str, ...], blocks: list[Block], chunk_tokens: int, overlap_tokens: int
) -> list[tuple[str, int]]:
    """(chunk text, token count) for one run of blocks under the same heading path."""
    heading = _heading_line(heading_path, chunk_tokens)
    fixed = count_tokens(heading) if heading else _overhead()
    budget = chunk_tokens - fixed
    overlap = min(overlap_tokens, budget // 3)
    bodies: list[tuple[str, int]] = []
    paragraphs: list[_Piece] = []
    for block in blocks:
        text = block.text.strip()
        if not text:
            continue
        tokens = _content_tokens(text)
        if block.is_faq:
            bodies += _pack(paragraphs, budget, overlap=0)
            paragraphs = []
            bodies.append((text, tokens))
            continue
        if tokens <= budget:
            paragraphs.append(_Piece(text, tokens, "\n\n"))
            continue
        bodies += _pack(paragraphs, budget, overlap=0)
        paragraphs = []
        bodies += _pack(_sentence_pieces(text, budget), budget, overlap=overlap)
    bodies += _pack(paragraphs, budget, overlap=0)
    # Token counts of whitespace-separated texts add up (tested), so no second pass is needed.
    return [(f"{heading}\n{body}" if heading else body, fixed + tokens) for body, tokens in bodies]


def _pack(pieces: list[_Piece], budget: int, *, overlap: int) -> list[tuple[str, int]]:
    leaves = _fit(pieces, budget - overlap)
    bodies = []
    for index, leaf in enumerate(leaves):
        tail = _overlap_tail(leaves[index - 1], overlap) if index else []
        if _size(tail) + _size(leaf) <= budget:  # a lone piece may fill the whole budget
            leaf = tail + leaf
        body = leaf[0].text + "".join(piece.joiner + piece.text for piece in leaf[1:])
        bodies.append((body, _size(leaf)))
    return bodies


def _fit(pieces: list[_Piece], budget: int) -> list[list[_Piece]]:
    """Cut a run of pieces that does not fit before its highest-ranked piece, until every part fits.

    Where the cuts fall depends only on the ranks (fixed by each piece's opening) and on
    whether a part fits, never on running totals from the start of the section: an edit
    that keeps a paragraph's opening changes the part holding it and, if the part now
    overflows or fits one level up, its neighbour. This is a Cartesian tree, so the
    expected depth is logarithmic.
    """
    leaves: list[list[_Piece]] = []
    stack = [pieces] if pieces else []
    while stack:
        part = stack.pop()
        if len(part) == 1 or _size(part) <= budget:
            leaves.append(part)
            continue
        at = _cut_point(part)
        stack += [part[at:], part[:at]]
    return leaves


def _cut_point(part: list[_Piece]) -> int:
    # Equal ranks only come from repeated openings; among those, cut nearest the middle.
    total = _size(part)
    best_key, best_at, before = (b"", 0), 1, 0
    for at in range(1, len(part)):
        before += part[at - 1].tokens
        key = (part[at].rank, -abs(2 * before - total))
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
