"""What reading an export did, counted: nothing is skipped, trimmed, moved or dropped
without a count here, and the first few cases of each kind are kept as examples."""

from __future__ import annotations

from dataclasses import dataclass, field

# Examples kept per kind of change (expanded, contracted, overlaps_dropped, ...).
EXAMPLES_PER_KIND = 5


@dataclass
class ReadReport:
    """Counts and first examples of what reading did; :meth:`lines` is the trainer's printout.

    ``spans`` and ``labels`` describe what the result holds (after every drop); each other
    counter names one thing done to records or spans.
    """

    records: int = 0
    skipped_cancelled: int = 0
    skipped_unlabeled: int = 0
    expanded: int = 0
    contracted: int = 0
    overlaps_dropped: int = 0
    examples: list[str] = field(default_factory=list)
    path: str = ""
    format: str = ""
    tokenizer: str = ""
    skipped_rejected: int = 0
    skipped_empty: int = 0
    predictions_only: int = 0
    older_annotations: int = 0
    without_spans: int = 0
    spans: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    trimmed: int = 0
    duplicates: int = 0
    empty_dropped: int = 0
    contracted_dropped: int = 0
    sentences: int = 0
    joined_sentences: int = 0
    cut_sentences: int = 0
    ignored_results: dict[str, int] = field(default_factory=dict)
    extra_choices: int = 0
    intent_fields: list[str] = field(default_factory=list)
    astral_records: int = 0
    _shown: dict[str, int] = field(default_factory=dict, repr=False)

    def note(self, kind: str, example: str) -> None:
        """Count one ``kind`` (a counter's name) and keep ``example`` if among its first few."""
        setattr(self, kind, getattr(self, kind) + 1)
        shown = self._shown.get(kind, 0)
        if shown < EXAMPLES_PER_KIND:
            self._shown[kind] = shown + 1
            self.examples.append(example)

    def add_label(self, label: str, count: int = 1) -> None:
        """A span of ``label`` kept (or, with a negative count, dropped after all)."""
        self.spans += count
        self.labels[label] = self.labels.get(label, 0) + count
        if not self.labels[label]:
            del self.labels[label]

    def intent_from(self, name: str) -> None:
        """Say where intents came from (a key or control name), once."""
        if name not in self.intent_fields:
            self.intent_fields.append(name)

    def ignore(self, kind: str) -> None:
        """Count one result of a kind the readers do not use (relations, text areas, ...)."""
        self.ignored_results[kind] = self.ignored_results.get(kind, 0) + 1

    def lines(self) -> list[str]:
        """A human-readable summary, one fact per line, only the facts that happened."""
        labels = ", ".join(f"{k} {v}" for k, v in sorted(self.labels.items()))
        head = f"{self.path} ({self.format}): {self.records} records, {self.spans} spans"
        lines = [head + (f" ({labels})" if labels else "")]
        if self.sentences:
            lines.append(f"{self.sentences} sentences for the model ({self.tokenizer} tokenizer)")
        skipped = [
            (self.skipped_cancelled, "cancelled"),
            (self.skipped_unlabeled, "without annotations"),
            (self.skipped_rejected, "rejected or ignored (answer)"),
            (self.skipped_empty, "with no tokens"),
        ]
        if any(n for n, _ in skipped):
            parts = ", ".join(f"{n} {what}" for n, what in skipped if n)
            lines.append(f"skipped: {parts}")
        if self.predictions_only:
            lines.append(
                f"{self.predictions_only} of the tasks without annotations have predictions "
                "only: predictions are not gold"
            )
        facts = [
            (self.older_annotations, "older annotations of tasks annotated again: ignored"),
            (self.without_spans, "records have no spans: every token is O"),
            (self.trimmed, "spans began or ended on whitespace: trimmed"),
            (self.duplicates, "spans repeated with the same label and offsets: merged"),
            (self.empty_dropped, "spans hold no token (only whitespace): dropped"),
            (self.expanded, "spans cut into tokens: expanded to the whole tokens they touch"),
            (self.contracted, "spans cut into tokens: contracted to the whole tokens inside"),
            (self.contracted_dropped, "spans hold no whole token: dropped by contracting"),
            (self.overlaps_dropped, "overlapping spans dropped: the longest kept"),
            (self.joined_sentences, "sentence breaks not made: a span crosses them"),
            (self.cut_sentences, "over-long sentences cut, as the service cuts them"),
            (self.extra_choices, "records have several choices: the first is the intent"),
        ]
        lines.extend(f"{n} {what}" for n, what in facts if n)
        if self.ignored_results:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.ignored_results.items()))
            lines.append(f"results of other types ignored: {kinds}")
        if self.intent_fields:
            lines.append(f"intent taken from: {', '.join(self.intent_fields)}")
        if self.astral_records:
            lines.append(
                f"warning: {self.astral_records} records with spans hold characters beyond "
                "U+FFFF (emoji); doccano counts offsets in UTF-16 units unless the project used "
                "grapheme mode: if their spans look shifted, read with offsets utf16"
            )
        if self.examples:
            lines.append("examples:")
            lines.extend(f"  {example}" for example in self.examples)
        return lines
