"""Inference-time CRF decoding in NumPy: Viterbi paths and forward-backward marginals.

What :meth:`model.crf.CRF.decode` runs, in float64 NumPy because at serving sizes
(a few sentences of a few dozen tokens, 10-20 tags) each step costs a microsecond or two,
where a torch op costs several: the per-step overhead, not arithmetic, is what a request pays.
Vectorised over the batch; only time steps loop. Index convention: ``transitions[from, to]``.
The tests check both against brute force and torch references (``tests/crf_reference.py``).
"""

from __future__ import annotations

import numpy as np


def _by_length(lengths: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Order putting the longest sequences first, and live-row counts per time step.

    With rows sorted so, the sequences still running at step ``t`` are the first
    ``live[t]`` rows: each step works on real tokens only, not on padding.
    """
    order = np.argsort(-lengths, kind="stable")
    # Over the padded width, not the longest length: padding may run past every sequence.
    live = (lengths[None, :] > np.arange(seq_len)[:, None]).sum(axis=1)
    return order, live


def viterbi(
    emissions: np.ndarray,
    lengths: np.ndarray,
    transitions: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> list[list[int]]:
    """Best path per sequence. ``emissions``: (batch, seq_len, num_tags), right-padded."""
    batch, seq_len, num_tags = emissions.shape
    if seq_len == 0 or batch == 0:
        return [[] for _ in range(batch)]
    order, live = _by_length(lengths, seq_len)
    emissions = emissions[order]
    sorted_lengths = lengths[order]
    # (to, from): the reduction below runs over the last, contiguous axis.
    transitions_to_from = np.ascontiguousarray(transitions.T)
    # (batch, num_tags): best score of a path ending in each tag
    score = start[None, :] + emissions[:, 0]
    backpointers = np.zeros((seq_len, batch, num_tags), dtype=np.int64)
    for t in range(1, seq_len):
        n = live[t]
        # (n, to, from)
        step = score[:n, None, :] + transitions_to_from[None]
        best_from = step.argmax(axis=2)
        score[:n] = step.max(axis=2) + emissions[:n, t]
        backpointers[t, :n] = best_from
    current = (score + end[None, :]).argmax(axis=1)
    path = np.zeros((batch, seq_len), dtype=np.int64)
    for t in range(seq_len - 1, -1, -1):
        path[:, t] = current
        n = live[t]
        if t > 0:
            # Rows past their end keep their last tag until they start.
            current[:n] = backpointers[t, np.arange(n), current[:n]]
    paths: list[list[int]] = [[] for _ in range(batch)]
    for row, original in enumerate(order):
        paths[original] = path[row, : sorted_lengths[row]].tolist()
    return paths


def marginals(
    emissions: np.ndarray,
    lengths: np.ndarray,
    transitions: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> np.ndarray | None:
    """P(tag at t | sentence): (batch, seq_len, num_tags), or ``None`` if it underflowed.

    Probability space with per-step rescaling; forbidden moves (scores of -1e4) become zeros.
    """
    batch, seq_len, num_tags = emissions.shape
    if seq_len == 0 or batch == 0:
        return np.zeros((batch, seq_len, num_tags))
    order, live = _by_length(lengths, seq_len)
    trans_p = np.exp(transitions - transitions.max())
    trans_p_t = np.ascontiguousarray(trans_p.T)
    start_p = np.exp(start - start.max())
    end_p = np.exp(end - end.max())
    # (batch, seq_len, num_tags), rows longest first
    ordered = emissions[order]
    emit_p = np.exp(ordered - ordered.max(axis=2, keepdims=True))
    alphas = np.zeros((batch, seq_len, num_tags))
    betas = np.zeros((batch, seq_len, num_tags))
    # An underflow shows up as 0 / 0 = NaN, caught below: no warning for it.
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = start_p[None, :] * emit_p[:, 0]
        alphas[:, 0] = alpha / alpha.sum(axis=1, keepdims=True)
        for t in range(1, seq_len):
            n = live[t]
            step = (alphas[:n, t - 1] @ trans_p) * emit_p[:n, t]
            alphas[:n, t] = step / step.sum(axis=1, keepdims=True)
        # A sequence's last token looks only at END.
        betas[:, seq_len - 1] = end_p
        for t in range(seq_len - 2, -1, -1):
            n = live[t + 1]
            betas[:, t] = end_p
            step = (emit_p[:n, t + 1] * betas[:n, t + 1]) @ trans_p_t
            betas[:n, t] = step / step.sum(axis=1, keepdims=True)
        joint = alphas * betas
        result = np.empty_like(joint)
        result[order] = joint / joint.sum(axis=2, keepdims=True)
    real = np.arange(seq_len)[None, :] < lengths[:, None]
    if not np.isfinite(result[real]).all():
        return None
    return result
