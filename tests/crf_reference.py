"""Reference CRF algorithms in plain torch log space, for tests only.

Slow and straightforward, so that they can be trusted: the tests check them against brute
force on tiny cases, then check :class:`CRF`'s fast paths against them on larger ones. They
read the CRF through its public :attr:`CRF.transition_scores`. Masks pad on the right.
"""

from __future__ import annotations

import torch

from tagserve.model.crf import CRF


def _alphas(crf: CRF, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log forward variables (batch, seq_len, num_tags); padding carries the last one on."""
    transitions, start, _ = (x.to(emissions.dtype) for x in crf.transition_scores)
    alpha = start.unsqueeze(0) + emissions[:, 0]
    alphas = [alpha]
    for t in range(1, emissions.size(1)):
        # (batch, from, to)
        step = alpha.unsqueeze(2) + transitions.unsqueeze(0) + emissions[:, t].unsqueeze(1)
        alpha = torch.where(mask[:, t].unsqueeze(1), torch.logsumexp(step, dim=1), alpha)
        alphas.append(alpha)
    return torch.stack(alphas, dim=1)


def log_partition(crf: CRF, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log Z per sequence (batch,), differentiable."""
    end = crf.transition_scores[2].to(emissions.dtype)
    return torch.logsumexp(_alphas(crf, emissions, mask)[:, -1] + end.unsqueeze(0), dim=1)


def marginals(crf: CRF, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """P(tag at t = k | sentence) by forward-backward: (batch, seq_len, num_tags)."""
    transitions, _, end = (x.to(emissions.dtype) for x in crf.transition_scores)
    alphas = _alphas(crf, emissions, mask)
    beta = end.unsqueeze(0).expand(emissions.size(0), -1)
    betas = [beta]
    for t in range(emissions.size(1) - 2, -1, -1):
        # (batch, from, to)
        step = transitions.unsqueeze(0) + (emissions[:, t + 1] + beta).unsqueeze(1)
        beta = torch.where(
            mask[:, t + 1].unsqueeze(1), torch.logsumexp(step, dim=2), end.unsqueeze(0)
        )
        betas.append(beta)
    log_z = torch.logsumexp(alphas[:, -1] + end.unsqueeze(0), dim=1)
    return torch.exp(alphas + torch.stack(betas[::-1], dim=1) - log_z.view(-1, 1, 1))


def viterbi(crf: CRF, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    """Best tag path of each sequence, cut to its length."""
    transitions, start, end = (x.to(emissions.dtype) for x in crf.transition_scores)
    batch, seq_len, _ = emissions.shape
    score = start.unsqueeze(0) + emissions[:, 0]
    backpointers = []
    for t in range(1, seq_len):
        # (batch, from, to)
        step = score.unsqueeze(2) + transitions.unsqueeze(0)
        best, best_from = step.max(dim=1)
        score = torch.where(mask[:, t].unsqueeze(1), best + emissions[:, t], score)
        backpointers.append(best_from)
    lengths = mask.sum(1)
    current = (score + end.unsqueeze(0)).argmax(dim=1)
    # Walk back from each sequence's own last position; padding steps keep the tag.
    path = torch.empty(batch, seq_len, dtype=torch.long)
    for t in range(seq_len - 1, -1, -1):
        path[:, t] = current
        if t > 0:
            previous = backpointers[t - 1].gather(1, current.unsqueeze(1)).squeeze(1)
            current = torch.where(t < lengths, previous, current)
    return [row[: int(n)] for row, n in zip(path.tolist(), lengths.tolist(), strict=True)]
