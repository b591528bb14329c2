"""Answers without an LLM: the passages' own sentences that best match the question, cited.

The offline default and the last fallback, so it must never fail for lack of a
network or a budget. It picks, from the top-ranked sources, the sentence sharing
the most words with the question (words typed without diacritics match accented
ones, so "gio mo cua" finds "giờ mở cửa"), plus a second one only if it covers
another part of the question; quotes them with their [n] markers and lists the
sources by title, under a label saying this is an automatic excerpt. With no
sources there is nothing honest to say, so it raises NoSources and the caller
answers "I don't know" (or hands over to a person) in the bot's own words.
"""

import re
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from chatbot.llm.base import FINISH_STOP, NO_USAGE, Generation, GenerationRequest, NoSources, Source
from knowledge.textnorm import STOPWORDS, fold

MODEL = "extractive"
LABELS = {
    "vi": ("Trích từ tài liệu (trả lời tự động):", "Nguồn:"),
    "en": ("From our documents (automatic excerpt):", "Sources:"),
}
SOURCES_CONSIDERED = 3  # retrieval ranks well enough that a fourth passage rarely holds the answer
MAX_SENTENCES = 2
MAX_SENTENCE_CHARS = 300
MIN_WORDS = 4  # shorter lines are headings or labels, not answers
MIN_NEW_WORDS = 2.0  # a second sentence must cover this much (weighted) of the question the first did not

# Question words that say nothing about the topic, on top of textnorm's STOPWORDS
# (folded; "tôi", "trong", "bao nhiêu" would otherwise make any sentence look relevant).
FUNCTION_WORDS = frozenset(
    {
        "toi", "minh", "trong", "cho", "tu", "den", "voi", "co", "khi", "se", "da", "dang", "bao",
        "nhieu", "nao", "vao", "thi", "lam", "sao", "xin", "hoi", "vay", "a", "an", "at", "be", "can",
        "do", "i", "in", "it", "long", "many", "me", "much", "my", "on", "please", "the", "to", "we", "you",
    }
)  # fmt: skip

_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
_LINE_MARKUP = re.compile("^[\\s#>*\u2022\\-\u2013\u2014|]+")  # bullets, dashes, quote and heading marks


@dataclass(frozen=True)
class _Candidate:
    source_rank: int  # 0 = best source
    position: int  # sentence index inside the source
    source: Source
    text: str
    # Question words the sentence (or the FAQ question before it) contains, with their weight.
    matched: dict[str, float]

    @property
    def score(self) -> float:
        return sum(self.matched.values())

    def gain(self, covered: set[str]) -> float:
        return sum(weight for word, weight in self.matched.items() if word not in covered)


class ExtractiveProvider:
    name = "extractive"

    def generate(self, request: GenerationRequest) -> Generation:
        started = time.monotonic()
        text = answer(request.question, request.sources, language=request.language)
        return Generation(
            text=text,
            model=MODEL,
            provider=self.name,
            usage=NO_USAGE,
            finish_reason=FINISH_STOP,
            latency_ms=round((time.monotonic() - started) * 1000),
        )

    def stream(self, request: GenerationRequest) -> Iterator[str | Generation]:
        generation = self.generate(request)
        # Line by line, so a streaming client renders it the same way as an LLM answer.
        yield from generation.text.splitlines(keepends=True)
        yield generation


def answer(question: str, sources: Sequence[Source], *, language: str = "vi") -> str:
    """The labelled, cited excerpt that answers `question` from `sources` (ranked best first)."""
    if not sources:
        raise NoSources("no knowledge passages to answer from")
    chosen = _choose(question, sources)
    language = language.split("-")[0].lower()
    intro, sources_label = LABELS.get(language, LABELS["en"])
    open_quote, close_quote = ("«", "»") if language == "vi" else ("“", "”")
    lines = [intro]
    lines += [f"{open_quote}{item.text}{close_quote} [{item.source.number}]" for item in chosen]
    cited = list({item.source.number: item.source for item in chosen}.values())
    lines.append("")
    lines.append(sources_label)
    lines += [f"[{source.number}] {_title(source)}" for source in cited]
    return "\n".join(lines)


def _question_words(question: str) -> frozenset[str]:
    """Lower-cased question words, diacritics kept, without words that carry no topic."""
    words = _WORD.findall(unicodedata.normalize("NFC", question.lower()))
    return frozenset(word for word in words if fold(word) not in STOPWORDS | FUNCTION_WORDS)


def _matched(question_words: frozenset[str], sentence: str) -> dict[str, float]:
    """The question words found in `sentence`, weighted by how sure the match is.

    A word typed with diacritics must match exactly ("mấy" is not "máy"). One typed
    without them, as users often do, also matches accented forms ("gio" finds "giờ"),
    but only at half weight: "may" could be "mấy" (how many) or "máy" (machine).
    """
    exact = set(_WORD.findall(unicodedata.normalize("NFC", sentence.lower())))
    folded = set(fold(sentence).split())
    matched: dict[str, float] = {}
    for word in question_words:
        if word in exact:
            matched[word] = 1.0
        elif word == fold(word) and word in folded:
            matched[word] = 0.5
    return matched


def _choose(question: str, sources: Sequence[Source]) -> list[_Candidate]:
    terms = _question_words(question)
    candidates = [
        candidate
        for rank, source in enumerate(sources[:SOURCES_CONSIDERED])
        for candidate in _candidates(source, rank, terms)
    ]
    if not candidates:  # only headings and questions: quote the best passage's start
        top = sources[0]
        text = _shorten(" ".join(top.text.split())) or top.title
        return [_Candidate(0, 0, top, text, {})]
    best = min(candidates, key=lambda item: (-item.score, item.source_rank, item.position))
    if best.score == 0:
        # Nothing shares a word with the question (a paraphrase, another language):
        # retrieval's ranking is the better judge, so take the top passage's opening.
        first_rank = min(item.source_rank for item in candidates)
        return [item for item in candidates if item.source_rank == first_rank][:MAX_SENTENCES]
    chosen = [best]
    covered = set(best.matched)
    while len(chosen) < MAX_SENTENCES:
        # Greedy coverage: a further sentence only for a part of the question not yet answered.
        gain, extra = max(
            ((item.gain(covered), item) for item in candidates if item not in chosen),
            key=lambda pair: (pair[0], -pair[1].source_rank, -pair[1].position),
            default=(0, None),
        )
        if extra is None or gain < MIN_NEW_WORDS:
            break
        chosen.append(extra)
        covered.update(extra.matched)
    return sorted(chosen, key=lambda item: (item.source_rank, item.position))


def _candidates(source: Source, rank: int, terms: frozenset[str]) -> Iterator[_Candidate]:
    carried: dict[str, float] = {}  # a FAQ question's words count for the answer that follows
    for position, raw in enumerate(_SENTENCE_END.split(source.text)):
        sentence = _LINE_MARKUP.sub("", raw).strip()
        if not sentence:
            continue
        matched = _matched(terms, sentence)
        if sentence.endswith("?"):
            carried = matched  # a question is never the answer itself
            continue
        if len(sentence.split()) >= MIN_WORDS:
            yield _Candidate(rank, position, source, _shorten(sentence), {**carried, **matched})
        carried = {}


def _shorten(text: str) -> str:
    if len(text) <= MAX_SENTENCE_CHARS:
        return text
    return text[:MAX_SENTENCE_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def _title(source: Source) -> str:
    if source.heading and source.heading != source.title:
        return f"{source.title} \u2014 {source.heading}"
    return source.title
