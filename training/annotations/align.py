"""Character spans → the served tokenizer's tokens → BIO-tagged sentences.

Each text is tokenized as the service tokenizes it (the model card's style) and, with
``split_sentences``, cut by the service's sentence splitter, so the model trains on the
sentences it will be given; a break that would cut a span is not made (counted). Pieces
longer than ``max_sentence_tokens`` are cut as :func:`tagserve.text.pipeline.plan_text`
cuts them, but before a span that the cut would fall inside. A span whose ends fall inside
a token is expanded, contracted or refused (``misaligned``); two spans that land on the
same tokens go through the overlap rule again.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import pairwise

from tagserve.model.schemes import Span, tags_from_spans
from tagserve.text.sentences import split_sentences
from tagserve.text.tokenizer import Token, tokenize
from tagserve.training.annotations.records import AnnotationOptions, SpanRecord
from tagserve.training.annotations.report import ReadReport
from tagserve.training.annotations.spanfix import Placed, resolve_overlaps
from tagserve.training.readers import Example


def align_records(
    records: list[SpanRecord], options: AnnotationOptions, report: ReadReport
) -> list[Example]:
    """Every record's sentences, in order."""
    return [example for record in records for example in align_record(record, options, report)]


def align_record(
    record: SpanRecord, options: AnnotationOptions, report: ReadReport
) -> list[Example]:
    """One record's sentences as examples (none for a text without tokens: counted)."""
    tokens = tokenize(record.text, options.tokenizer)
    if not tokens:
        report.skipped_empty += 1
        return []
    spans = token_spans(record, tokens, options, report)
    tags = tags_from_spans([Span(s.label, s.start, s.end) for s in spans], len(tokens), "BIO")
    examples = []
    for start, end in _pieces(record.text, tokens, spans, options, report):
        piece = tags[start:end]
        if piece[0].startswith("I-"):  # a span longer than a whole piece was cut
            piece[0] = "B-" + piece[0][2:]
        examples.append(Example([t.text for t in tokens[start:end]], piece, record.intent))
    report.sentences += len(examples)
    return examples


def token_spans(
    record: SpanRecord, tokens: list[Token], options: AnnotationOptions, report: ReadReport
) -> list[Placed]:
    """The record's spans over token indices, per the misalignment and overlap rules."""
    starts = [t.start for t in tokens]
    ends = [t.end for t in tokens]
    text = record.text
    placed: list[Placed] = []
    for start, end, label in record.spans:
        first = bisect_right(ends, start)  # the first token ending after the span starts
        last = bisect_left(starts, end) - 1  # the last token starting before it ends
        shown = f"{text[start:end]!r} ({label}, {start}-{end})"
        if first > last:
            report.note("empty_dropped", f"{record.source}: span {shown} holds no token")
            report.add_label(label, -1)
            continue
        cut_start, cut_end = tokens[first].start < start, tokens[last].end > end
        if not (cut_start or cut_end):
            placed.append(Placed(first, last + 1, label, shown))
            continue
        around = [t.text for t in tokens[max(first - 1, 0) : last + 2]]
        where = f"{record.source}: span {shown} in tokens {around}"
        if options.misaligned == "error":
            raise record.error(
                f"span {shown} does not fall on token boundaries ({options.tokenizer} "
                f"tokenizer): tokens {around}; fix the span, or read with misaligned "
                "'expand' (to the tokens it touches) or 'contract' (to the tokens inside)"
            )
        if options.misaligned == "expand":
            report.note("expanded", f"{where}: expanded")
            placed.append(Placed(first, last + 1, label, shown))
            continue
        inner_first, inner_last = first + cut_start, last - cut_end
        if inner_first > inner_last:
            report.note("contracted_dropped", f"{where}: no whole token inside, dropped")
            report.add_label(label, -1)
            continue
        report.note("contracted", f"{where}: contracted")
        placed.append(Placed(inner_first, inner_last + 1, label, shown))
    kept = resolve_overlaps(
        placed, options.overlaps, record.source, record.error, report, " once on tokens"
    )
    for dropped in set(placed) - set(kept):
        report.add_label(dropped.label, -1)
    return kept


def _pieces(
    text: str,
    tokens: list[Token],
    spans: list[Placed],
    options: AnnotationOptions,
    report: ReadReport,
) -> list[tuple[int, int]]:
    """``[start, end)`` token ranges: sentences (unless a span crosses the break), then
    over-long ones cut."""
    inside = _inside_spans(spans, len(tokens))
    breaks = [0]
    if options.split_sentences:
        position = 0
        for sentence in split_sentences(text, tokens)[:-1]:
            position += len(sentence)
            if inside[position]:
                report.joined_sentences += 1
            else:
                breaks.append(position)
    breaks.append(len(tokens))
    pieces = []
    limit = options.max_sentence_tokens
    for start, end in pairwise(breaks):
        while end - start > limit:
            cut = start + limit
            while cut > start + 1 and inside[cut]:
                cut -= 1  # back to the start of the span the cut would fall inside
            if inside[cut]:
                cut = start + limit  # a span longer than a whole piece: cut it
            report.cut_sentences += 1
            pieces.append((start, cut))
            start = cut
        pieces.append((start, end))
    return pieces


def _inside_spans(spans: list[Placed], length: int) -> list[bool]:
    """``inside[i]``: a break before token ``i`` would cut a span."""
    inside = [False] * (length + 1)
    for span in spans:
        for i in range(span.start + 1, span.end):
            inside[i] = True
    return inside
