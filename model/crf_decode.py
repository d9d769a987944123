"""Inference-time CRF decoding in NumPy: Viterbi paths and forward-backward marginals.

The same mathematics as :class:`model.crf.CRF`, run in float64 NumPy because at serving sizes
(a few sentences of a few dozen tokens, 10-20 tags) each step costs a microsecond or two,
where a torch op costs several: the per-step overhead, not arithmetic, is what a request pays.
Vectorised over the batch; only time steps loop. Index convention: ``transitions[from, to]``.
"""

from __future__ import annotations

import numpy as np


def viterbi(
    emissions: np.ndarray,
    lengths: np.ndarray,
    transitions: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> list[list[int]]:
    """Best path per sequence. ``emissions``: (batch, seq_len, num_tags), right-padded."""
    batch, seq_len, _ = emissions.shape
    if seq_len == 0:
        return [[] for _ in range(batch)]
    # (batch, num_tags)
    score = start[None, :] + emissions[:, 0]
    backpointers = np.zeros((seq_len, batch, emissions.shape[2]), dtype=np.int64)
    for t in range(1, seq_len):
        # (batch, num_tags_from, num_tags_to)
        step = score[:, :, None] + transitions[None, :, :]
        best_from = step.argmax(axis=1)
        best = np.take_along_axis(step, best_from[:, None, :], axis=1)[:, 0, :]
        live = (t < lengths)[:, None]
        score = np.where(live, best + emissions[:, t], score)
        backpointers[t] = best_from
    current = (score + end[None, :]).argmax(axis=1)
    rows = np.arange(batch)
    path = np.zeros((batch, seq_len), dtype=np.int64)
    for t in range(seq_len - 1, -1, -1):
        path[:, t] = current
        if t > 0:
            previous = backpointers[t, rows, current]
            current = np.where(t < lengths, previous, current)
    return [path[b, : lengths[b]].tolist() for b in range(batch)]


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
    trans_p = np.exp(transitions - transitions.max())
    start_p = np.exp(start - start.max())
    end_p = np.exp(end - end.max())
    # (batch, seq_len, num_tags)
    emit_p = np.exp(emissions - emissions.max(axis=2, keepdims=True))
    alphas = np.empty((batch, seq_len, num_tags))
    betas = np.empty((batch, seq_len, num_tags))
    alpha = start_p[None, :] * emit_p[:, 0]
    alphas[:, 0] = alpha / alpha.sum(axis=1, keepdims=True)
    for t in range(1, seq_len):
        step = (alphas[:, t - 1] @ trans_p) * emit_p[:, t]
        alphas[:, t] = step / step.sum(axis=1, keepdims=True)
    betas[:, seq_len - 1] = end_p
    for t in range(seq_len - 2, -1, -1):
        step = (emit_p[:, t + 1] * betas[:, t + 1]) @ trans_p.T
        step = step / step.sum(axis=1, keepdims=True)
        # A sequence's last token looks only at END.
        betas[:, t] = np.where((t + 1 < lengths)[:, None], step, end_p[None, :])
    joint = alphas * betas
    with np.errstate(invalid="ignore", divide="ignore"):
        result = joint / joint.sum(axis=2, keepdims=True)
    real = np.arange(seq_len)[None, :] < lengths[:, None]
    if not np.isfinite(result[real]).all():
        return None
    return result
