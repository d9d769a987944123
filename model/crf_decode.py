"""Inference-time CRF decoding in NumPy: Viterbi paths and forward-backward marginals.

What :meth:`model.crf.CRF.decode` runs, in float64 NumPy because at serving sizes
(a few sentences of a few dozen tokens, 10-20 tags) each step costs a microsecond or two,
where a torch op costs several: the per-step overhead, not arithmetic, is what a request pays.
Vectorised over the batch; only time steps loop, over time-major arrays whose first ``live[t]``
rows are the sequences still running at step ``t`` (rows sorted longest first), so a step
works on real tokens only. One sentence, the service's commonest call, takes a path of its own
on vectors, with fewer NumPy calls per token. Index convention: ``transitions[from, to]``.
The tests check both paths against brute force and torch references (``tests/crf_reference.py``).
"""

from __future__ import annotations

import numpy as np


def decode(
    emissions: np.ndarray,
    lengths: np.ndarray,
    transitions: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> tuple[list[list[int]], list[list[float]] | None]:
    """Best path per sequence and each chosen tag's marginal probability, cut to length;
    the probabilities are ``None`` if probability space underflowed (scores ~1e4 apart).

    ``emissions``: (batch, seq_len, num_tags), right-padded, any float dtype (read as float64);
    ``lengths``: (batch,), each at least 1.
    """
    batch, seq_len, _ = emissions.shape
    if seq_len == 0 or batch == 0:
        return [[] for _ in range(batch)], [[] for _ in range(batch)]
    if batch == 1:
        one_path, one_scores = _decode_one(
            emissions[0, : int(lengths[0])].astype(np.float64), transitions, start, end
        )
        return [one_path], None if one_scores is None else [one_scores]
    order: np.ndarray | None = None
    if not bool((lengths[:-1] >= lengths[1:]).all()):
        # The predictor hands batches longest first; anything else is sorted here.
        order = np.argsort(-lengths, kind="stable")
        emissions, lengths = emissions[order], lengths[order]
    # (seq_len, batch, num_tags)
    by_time = np.ascontiguousarray(emissions.transpose(1, 0, 2), dtype=np.float64)
    live = (lengths[None, :] > np.arange(seq_len)[:, None]).sum(axis=1).tolist()
    path = _viterbi(by_time, live, transitions, start, end)
    # An underflow shows up as 0 / 0 = NaN, caught below: no warning for it.
    with np.errstate(invalid="ignore", divide="ignore"):
        joint = _joint(by_time, live, transitions, start, end)
        # (seq_len, batch): the chosen tags' marginals
        chosen = np.take_along_axis(joint, path[:, :, None], axis=2)[:, :, 0]
        chosen /= joint.sum(axis=2)
    real = np.arange(seq_len)[:, None] < lengths[None, :]
    cut = lengths.tolist()
    paths = [row[:n] for row, n in zip(path.T.tolist(), cut, strict=True)]
    scores = [row[:n] for row, n in zip(chosen.T.tolist(), cut, strict=True)]
    if order is not None:
        position = np.empty(batch, dtype=np.intp)
        position[order] = np.arange(batch)
        paths = [paths[row] for row in position.tolist()]
        scores = [scores[row] for row in position.tolist()]
    return paths, scores if bool(np.isfinite(chosen[real]).all()) else None


def marginals(
    emissions: np.ndarray,
    lengths: np.ndarray,
    transitions: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> np.ndarray | None:
    """P(tag at t | sentence): (batch, seq_len, num_tags), or ``None`` if it underflowed.

    Probability space with per-step rescaling; forbidden moves (scores of -1e4) become zeros.
    :func:`decode` computes the same numbers and keeps only the chosen tags'.
    """
    batch, seq_len, num_tags = emissions.shape
    if seq_len == 0 or batch == 0:
        return np.zeros((batch, seq_len, num_tags))
    order = np.argsort(-lengths, kind="stable")
    by_time = np.ascontiguousarray(emissions[order].transpose(1, 0, 2), dtype=np.float64)
    sorted_lengths = lengths[order]
    live = (sorted_lengths[None, :] > np.arange(seq_len)[:, None]).sum(axis=1).tolist()
    with np.errstate(invalid="ignore", divide="ignore"):
        joint = _joint(by_time, live, transitions, start, end)
        result = np.empty((batch, seq_len, num_tags))
        result[order] = (joint / joint.sum(axis=2, keepdims=True)).transpose(1, 0, 2)
    real = np.arange(seq_len)[None, :] < lengths[:, None]
    if not np.isfinite(result[real]).all():
        return None
    return result


def _viterbi(
    emissions: np.ndarray,
    live: list[int],
    transitions: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> np.ndarray:
    """(seq_len, batch) best tags of time-major, longest-first ``emissions``, zeros past ends."""
    seq_len, batch, num_tags = emissions.shape
    # (to, from): the argmax below runs over the last, contiguous axis.
    to_from = np.ascontiguousarray(transitions.T)
    # (batch, num_tags): best score of a path ending in each tag; rows past their end keep it.
    score = start[None, :] + emissions[0]
    # (batch * to, from), one row per (sequence, tag) pair
    step_buffer = np.empty((batch * num_tags, num_tags))
    cells = np.arange(batch * num_tags)
    backpointers = np.zeros((seq_len, batch, num_tags), dtype=np.intp)
    for t in range(1, seq_len):
        n = live[t]
        step = step_buffer[: n * num_tags]
        np.add(score[:n, None, :], to_from, out=step.reshape(n, num_tags, num_tags))
        best = step.argmax(axis=1)
        backpointers[t, :n] = best.reshape(n, num_tags)
        # The max read at the argmax: np.max over a short last axis is several times slower.
        score[:n] = step[cells[: n * num_tags], best].reshape(n, num_tags)
        score[:n] += emissions[t, :n]
    current = (score + end[None, :]).argmax(axis=1)
    path = np.zeros((seq_len, batch), dtype=np.intp)
    rows = np.arange(batch)
    for t in range(seq_len - 1, 0, -1):
        n = live[t]
        path[t, :n] = current[:n]
        # Rows past their end keep their last tag until they start.
        current[:n] = backpointers[t, rows[:n], current[:n]]
    path[0] = current
    return path


def _joint(
    emissions: np.ndarray,
    live: list[int],
    transitions: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> np.ndarray:
    """Forward times backward variables, each rescaled per step: (seq_len, batch, num_tags)
    over time-major, longest-first ``emissions``; zeros past a sequence's end."""
    seq_len = emissions.shape[0]
    trans_p = np.exp(transitions - transitions.max())
    trans_p_t = np.ascontiguousarray(trans_p.T)
    start_p = np.exp(start - start.max())
    end_p = np.exp(end - end.max())
    peak = np.take_along_axis(emissions, emissions.argmax(axis=2)[:, :, None], axis=2)
    emit_p = np.exp(emissions - peak)
    alphas = np.zeros_like(emit_p)
    alpha = start_p[None, :] * emit_p[0]
    np.divide(alpha, alpha.sum(axis=1, keepdims=True), out=alphas[0])
    for t in range(1, seq_len):
        n = live[t]
        step = alphas[t - 1, :n] @ trans_p
        step *= emit_p[t, :n]
        np.divide(step, step.sum(axis=1, keepdims=True), out=alphas[t, :n])
    # A sequence's last token looks only at END.
    betas = np.empty_like(emit_p)
    betas[:] = end_p
    for t in range(seq_len - 2, -1, -1):
        n = live[t + 1]
        step = (emit_p[t + 1, :n] * betas[t + 1, :n]) @ trans_p_t
        np.divide(step, step.sum(axis=1, keepdims=True), out=betas[t, :n])
    alphas *= betas
    return alphas


def _decode_one(
    emissions: np.ndarray, transitions: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[list[int], list[float] | None]:
    """:func:`decode` for one unpadded (seq_len, num_tags) sequence: the same arithmetic on
    vectors, without the live-row slicing, backtracked in Python."""
    seq_len, num_tags = emissions.shape
    to_from = np.ascontiguousarray(transitions.T)
    tags = np.arange(num_tags)
    score = start + emissions[0]
    backpointers = np.zeros((seq_len, num_tags), dtype=np.intp)
    for t in range(1, seq_len):
        # (to, from)
        step = score + to_from
        best = step.argmax(axis=1)
        backpointers[t] = best
        score = step[tags, best]
        score += emissions[t]
    tag = int((score + end).argmax())
    path = [tag]
    for best_from in backpointers[:0:-1].tolist():
        tag = best_from[tag]
        path.append(tag)
    path.reverse()
    trans_p = np.exp(transitions - transitions.max())
    trans_p_t = np.ascontiguousarray(trans_p.T)
    positions = np.arange(seq_len)
    emit_p = np.exp(emissions - emissions[positions, emissions.argmax(axis=1)][:, None])
    alphas = np.empty_like(emit_p)
    betas = np.empty_like(emit_p)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = np.exp(start - start.max()) * emit_p[0]
        alpha /= alpha.sum()
        alphas[0] = alpha
        for t in range(1, seq_len):
            alpha = alpha @ trans_p
            alpha *= emit_p[t]
            alpha /= alpha.sum()
            alphas[t] = alpha
        beta = np.exp(end - end.max())
        betas[seq_len - 1] = beta
        for t in range(seq_len - 2, -1, -1):
            beta = (emit_p[t + 1] * beta) @ trans_p_t
            beta /= beta.sum()
            betas[t] = beta
        alphas *= betas
        chosen = alphas[positions, path] / alphas.sum(axis=1)
    return path, chosen.tolist() if bool(np.isfinite(chosen).all()) else None
