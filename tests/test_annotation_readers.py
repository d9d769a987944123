"""The annotation readers against the reference data: CoNLL-2003 and ATIS sentences written
as Label Studio JSON and JSON-MIN, doccano JSONL (code points and UTF-16 units, emoji
inserted) and span JSONL read back give the tags the CoNLL and seq.in readers give."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tagserve.model.schemes import repair_bio, spans_from_tags
from tagserve.text.tokenizer import tokenize
from tagserve.training.annotations import (
    AnnotationOptions,
    align_record,
    read_annotations,
    read_records,
)
from tagserve.training.readers import DataError, Example, read_dataset, read_dataset_with_report
from tests.annotation_exports import (
    Gold,
    doccano_record,
    from_tokens,
    json_min_record,
    label_studio_task,
    spans_record,
    write_json,
    write_jsonl,
)

pytestmark = pytest.mark.slow

CONLL_SENTENCES = 2000
# An emoji (two UTF-16 units) goes into every EMOJI_EVERY-th sentence, so UTF-16 offsets
# differ from code points after it.
EMOJI_EVERY = 7
EMOJI = "\U0001f600"
# Share of the first 2,000 CoNLL-2003 train sentences whose space-joined text the conll
# tokenizer splits back into exactly the CoNLL tokens: measured 0.965 (1,930 of 2,000; the
# rest are "C$" -> "C" "$", "+301" -> "+" "301", "24.SEP.96", ... and a final "U.S." that
# gives up its period). ATIS train with the atis tokenizer: 1.0 (4,478 of 4,478).
CONLL_FLOOR = 0.95


def with_emoji(examples: list[Example]) -> list[Example]:
    """Every EMOJI_EVERY-th sentence gets an emoji token (tag O) inside it."""
    changed = []
    for n, e in enumerate(examples):
        if n % EMOJI_EVERY:
            changed.append(e)
            continue
        at = n % (len(e.tokens) + 1)
        tokens = [*e.tokens[:at], EMOJI, *e.tokens[at:]]
        changed.append(Example(tokens, [*e.tags[:at], "O", *e.tags[at:]], e.intent))
    return changed


def label_studio(path: Path, golds: list[Gold]) -> Path:
    tasks = [label_studio_task(n, g) for n, g in enumerate(golds, start=1)]
    for task in tasks[::50]:
        # An older annotation with other labels, and a prediction: neither is gold.
        older = label_studio_task(0, Gold(*_relabelled(task)), "2024-04-01T09:00:00Z")
        task["annotations"] = [*older["annotations"], *task["annotations"]]  # type: ignore[misc]
        task["predictions"] = older["annotations"]
    return write_json(path / "ls.json", tasks)


def _relabelled(task: dict[str, object]) -> tuple[str, list[tuple[int, int, str]]]:
    text = task["data"]["text"]  # type: ignore[index]
    return text, [(0, len(text.split()[0]), "JUNK")]


def json_min(path: Path, golds: list[Gold]) -> Path:
    return write_json(path / "min.json", [json_min_record(n, g) for n, g in enumerate(golds)])


def doccano(units: str) -> Callable[[Path, list[Gold]], Path]:
    def write(path: Path, golds: list[Gold]) -> Path:
        records = [doccano_record(n, g, units) for n, g in enumerate(golds)]
        return write_jsonl(path / f"doccano-{units}.jsonl", records)

    return write


def span_jsonl(path: Path, golds: list[Gold]) -> Path:
    records = []
    for n, gold in enumerate(golds):
        if n % 100 == 3:  # a rejected answer with junk spans first: skipped, counted
            records.append(spans_record(Gold(gold.text, [(0, 1, "JUNK")]), answer="reject"))
        records.append(spans_record(gold))
    return write_jsonl(path / "spans.jsonl", records)


WRITERS = {
    "label-studio": (label_studio, "codepoints"),
    "label-studio-min": (json_min, "codepoints"),
    "doccano-codepoints": (doccano("codepoints"), "codepoints"),
    "doccano-utf16": (doccano("utf16"), "utf16"),
    "spans": (span_jsonl, "codepoints"),
}


def check_reader(
    path: Path, examples: list[Example], style: str, offsets: str
) -> tuple[float, list[int]]:
    """Read ``path`` back; assert the tags equal ``examples``' wherever the tokenizer gives
    the same tokens, and that every span survives elsewhere. Returns that share and the
    indices of the sentences it does not cover."""
    options = AnnotationOptions(tokenizer=style, offsets=offsets)  # type: ignore[arg-type]
    records, report = read_records(path, None, options)
    assert len(records) == len(examples)
    gold_labels = Counter(s.label for e in examples for s in spans_from_tags(e.tags, "BIO"))
    assert report.labels == dict(gold_labels) and report.spans == sum(gold_labels.values())
    per_record = [align_record(r, options, report) for r in records]
    differ = []
    for n, (example, pieces) in enumerate(zip(examples, per_record, strict=True)):
        tokens = [t for piece in pieces for t in piece.tokens]
        tags = [t for piece in pieces for t in piece.tags]
        assert {piece.intent for piece in pieces} == {example.intent}
        if [t.text for t in tokenize(" ".join(example.tokens), style)] == example.tokens:  # type: ignore[arg-type]
            # A stray I- after O (a few in CoNLL-2003) starts an entity, as conlleval reads it.
            assert (tokens, tags) == (example.tokens, repair_bio(example.tags)), n
            continue
        differ.append(n)
        # Tokens split further: every entity is still there, over the same characters.
        expected = [
            (s.label, "".join(example.tokens[s.start : s.end]))
            for s in spans_from_tags(example.tags, "BIO")
        ]
        found = [(s.label, "".join(tokens[s.start : s.end])) for s in spans_from_tags(tags, "BIO")]
        assert found == expected, n
    # Nothing was moved or dropped to fit the tokens: on space-joined text no span edge can
    # fall inside a token (tokens never cross a space), so misaligned="error" reads it all.
    assert report.expanded == report.contracted == report.overlaps_dropped == 0
    strict = AnnotationOptions(tokenizer=style, offsets=offsets, misaligned="error")  # type: ignore[arg-type]
    flat, _ = read_annotations(path, None, strict)
    assert flat == list(itertools.chain.from_iterable(per_record))
    return 1 - len(differ) / len(examples), differ


@pytest.fixture(scope="module")
def conll(data_dir: Path) -> list[Example]:
    return with_emoji(read_dataset(data_dir / "conll2003/train.txt")[:CONLL_SENTENCES])


@pytest.fixture(scope="module")
def atis(data_dir: Path) -> list[Example]:
    return with_emoji(read_dataset(data_dir / "atis/train"))


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_conll_sentences_read_back_with_their_tags(
    writer: str, conll: list[Example], tmp_path: Path
) -> None:
    write, offsets = WRITERS[writer]
    path = write(tmp_path, [from_tokens(e.tokens, e.tags) for e in conll])
    share, differ = check_reader(path, conll, "conll", offsets)
    assert share >= CONLL_FLOOR, share
    # The share is the tokenizer's, not the reader's: the same sentences each time.
    assert len(differ) == sum(
        [t.text for t in tokenize(" ".join(e.tokens))] != e.tokens for e in conll
    )


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_atis_sentences_read_back_with_their_slots_and_intents(
    writer: str, atis: list[Example], tmp_path: Path
) -> None:
    write, offsets = WRITERS[writer]
    path = write(tmp_path, [from_tokens(e.tokens, e.tags, e.intent) for e in atis])
    share, _ = check_reader(path, atis, "atis", offsets)
    assert share == 1.0


def test_auto_detection_reads_each_export_as_its_format(
    conll: list[Example], tmp_path: Path
) -> None:
    golds = [from_tokens(e.tokens, e.tags) for e in conll[:300]]
    expected = read_annotations(label_studio(tmp_path, golds))[0]
    for name in ("label-studio-min", "doccano-codepoints", "spans"):
        path = WRITERS[name][0](tmp_path, golds)
        examples, report = read_dataset_with_report(path)
        assert examples == expected
        assert report is not None and report.format == name.removesuffix("-codepoints")
    assert report.skipped_rejected == 3  # the span file's rejected answers


def test_utf16_offsets_read_as_code_points_are_caught(conll: list[Example], tmp_path: Path) -> None:
    # Two emoji first (four UTF-16 units, two code points), in sentences whose spans end two
    # characters before the text does (shifted, they stay inside it). One emoji alone shifts
    # a span by one character, which trimming and expanding undo; two move it into the next
    # word.
    plain = [e for e in conll[:300] if EMOJI not in e.tokens]
    golds = [from_tokens([EMOJI, EMOJI, *e.tokens], ["O", "O", *e.tags]) for e in plain]
    golds = [g for g in golds if all(end <= len(g.text) - 2 for _, end, _ in g.spans)]
    path = doccano("utf16")(tmp_path, golds)
    right = read_dataset(path, annotations=AnnotationOptions(offsets="utf16"))
    assert right == read_annotations(doccano("codepoints")(tmp_path, golds))[0]
    # Shifted into the next word, neighbours can land on one token: keep the longer to see
    # the rest.
    lenient = AnnotationOptions(overlaps="longest")
    wrong, report = read_dataset_with_report(path, annotations=lenient)
    assert right != wrong
    assert report is not None and report.expanded > 0
    assert report.astral_records == sum(bool(g.spans) for g in golds) > 0
    assert any("offsets utf16" in line for line in report.lines())
    with pytest.raises(DataError, match=r"doccano-utf16\.jsonl:\d+: span .* does not fall on"):
        read_dataset(path, annotations=AnnotationOptions(misaligned="error"))
