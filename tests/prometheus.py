"""Reading ``/metrics`` in tests with prometheus-client's own parser, never string splitting."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample_value(text: str, sample: str, **labels: str) -> float:
    """The value of sample ``sample`` (e.g. ``tagserve_batch_sentences_count``) with exactly
    ``labels``; fails naming the samples that do exist when there is none."""
    seen = []
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
            if found.name == sample:
                seen.append(found.labels)
    raise AssertionError(f"no sample {sample}{labels} in /metrics (labels seen: {seen})")


def has_sample(text: str, sample: str) -> bool:
    """Whether any sample named ``sample`` exists."""
    return any(
        found.name == sample
        for family in text_string_to_metric_families(text)
        for found in family.samples
    )
