"""A linear-chain CRF, vectorised over the batch, with scheme constraints.

Training reads :meth:`CRF.log_likelihood` (the forward algorithm, in torch for autograd);
serving reads :meth:`CRF.decode` (Viterbi and marginals in NumPy, :mod:`model.crf_decode`).
Slow reference Viterbi and marginals, which the tests check both against, are in the tests.

Index convention: ``transitions[i, j]`` scores moving *from* tag ``i`` *to* tag ``j``
(as pytorch-crf and AllenNLP do). Only the time axis is a Python loop; every step works
on the whole batch at once, so a batch of 128 costs about what a batch of 1 does.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tagserve.model import crf_decode

_FORBIDDEN = -10000.0


class CRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags with optional allowed-transition constraints."""

    def __init__(self, num_tags: int, allowed: set[tuple[int, int]] | None = None) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"expected at least 1 tag, got {num_tags}")
        self.num_tags = num_tags
        # (num_tags, num_tags): [from, to]
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        # (num_tags + 2, num_tags + 2): START is row num_tags, END is column num_tags + 1
        mask = torch.ones(num_tags + 2, num_tags + 2, dtype=torch.bool)
        if allowed is not None:
            mask.zero_()
            for i, j in allowed:
                mask[i, j] = True
        self.register_buffer("constraint_mask", mask, persistent=False)
        self._numpy_scores_cache: tuple[tuple[int, ...], tuple[np.ndarray, ...]] | None = None

    @property
    def transition_scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Transition ``[from, to]``, start and end scores, forbidden moves at -1e4.

        What every CRF algorithm reads instead of the raw parameters; public so tests can run
        reference algorithms on exactly these numbers.
        """
        n = self.num_tags
        mask: torch.Tensor = self.constraint_mask  # type: ignore[assignment]
        transitions = self.transitions.masked_fill(~mask[:n, :n], _FORBIDDEN)
        start = self.start_transitions.masked_fill(~mask[n, :n], _FORBIDDEN)
        end = self.end_transitions.masked_fill(~mask[:n, n + 1], _FORBIDDEN)
        return transitions, start, end

    def _check(self, emissions: torch.Tensor, mask: torch.Tensor) -> None:
        if emissions.dim() != 3 or emissions.size(2) != self.num_tags:
            raise ValueError(
                f"expected emissions of shape (batch, seq_len, {self.num_tags}), "
                f"got {tuple(emissions.shape)}"
            )
        if mask.shape != emissions.shape[:2]:
            raise ValueError(
                f"expected mask of shape {tuple(emissions.shape[:2])}, got {tuple(mask.shape)}"
            )
        if mask.size(1) and not bool(mask[:, 0].all()):
            raise ValueError(
                "every sequence needs at least one token (mask[:, 0] must be all true)"
            )

    def log_likelihood(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Log-probability of the gold ``tags`` under the CRF, one value per sequence.

        Args:
            emissions: (batch, seq_len, num_tags) unary scores.
            tags: (batch, seq_len) gold tag indices (anything at padded positions).
            mask: (batch, seq_len) true for real tokens; padding only on the right.
        """
        self._check(emissions, mask)
        return self._gold_score(emissions, tags, mask) - self.log_partition(emissions, mask)

    def _gold_score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        transitions, start, end = self.transition_scores
        maskf = mask.to(emissions.dtype)
        # (batch, seq_len)
        unary = emissions.gather(2, tags.unsqueeze(2)).squeeze(2) * maskf
        # (batch, seq_len - 1)
        binary = transitions[tags[:, :-1], tags[:, 1:]] * maskf[:, 1:]
        lengths = mask.sum(1)
        # (batch,)
        last_tags = tags.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        return start[tags[:, 0]] + unary.sum(1) + binary.sum(1) + end[last_tags]

    def _alphas(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Forward variables for every position: (batch, seq_len, num_tags)."""
        transitions, start, _ = self.transition_scores
        # (batch, num_tags)
        alpha = start.unsqueeze(0) + emissions[:, 0]
        alphas = [alpha]
        for t in range(1, emissions.size(1)):
            # (batch, num_tags_from, num_tags_to)
            step = alpha.unsqueeze(2) + transitions.unsqueeze(0) + emissions[:, t].unsqueeze(1)
            # (batch, num_tags)
            alpha = torch.where(mask[:, t].unsqueeze(1), torch.logsumexp(step, dim=1), alpha)
            alphas.append(alpha)
        return torch.stack(alphas, dim=1)

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z for each sequence: (batch,).

        Computed in probability space in float64 with per-step rescaling (a matrix product
        per step instead of a ``logsumexp`` over (batch, tags, tags), which dominates with
        hundreds of tags, as ATIS has); falls back to log space if a step underflows.
        """
        self._check(emissions, mask)
        log_z = self._scaled_log_partition(emissions, mask)
        if not bool(torch.isfinite(log_z).all()):
            _, _, end = self.transition_scores
            alphas = self._alphas(emissions, mask)
            # Padding carries alpha forward unchanged, so the last column is the last real one.
            return torch.logsumexp(alphas[:, -1] + end.unsqueeze(0), dim=1)
        return log_z.to(emissions.dtype)

    def _scaled_log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        transitions, start, end = (x.double() for x in self.transition_scores)
        # (batch, seq_len, num_tags)
        scores = emissions.double()
        # (batch, seq_len, 1)
        emission_max = scores.max(dim=2, keepdim=True).values.detach()
        emit_p = torch.exp(scores - emission_max)
        trans_max, start_max, end_max = (x.max().detach() for x in (transitions, start, end))
        # (num_tags, num_tags): forbidden moves become exact zeros
        trans_p = torch.exp(transitions - trans_max)
        # (batch, num_tags)
        alpha = torch.exp(start - start_max).unsqueeze(0) * emit_p[:, 0]
        total = alpha.sum(1, keepdim=True)
        alpha = alpha / total
        # (batch,): log of everything divided out so far
        log_scale = start_max + emission_max[:, 0, 0] + torch.log(total.squeeze(1))
        for t in range(1, emissions.size(1)):
            step = (alpha @ trans_p) * emit_p[:, t]
            total = step.sum(1, keepdim=True)
            live = mask[:, t]
            alpha = torch.where(live.unsqueeze(1), step / total, alpha)
            increment = trans_max + emission_max[:, t, 0] + torch.log(total.squeeze(1))
            log_scale = log_scale + torch.where(live, increment, torch.zeros_like(increment))
        final = (alpha * torch.exp(end - end_max).unsqueeze(0)).sum(1)
        return log_scale + end_max + torch.log(final)

    def _log_space_marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Forward-backward with ``logsumexp``: :meth:`decode`'s fallback when NumPy underflows."""
        transitions, _, end = self.transition_scores
        alphas = self._alphas(emissions, mask)
        seq_len = emissions.size(1)
        # (batch, num_tags)
        beta = end.unsqueeze(0).expand(emissions.size(0), -1)
        betas = [beta]
        for t in range(seq_len - 2, -1, -1):
            # (batch, num_tags_from, num_tags_to)
            step = transitions.unsqueeze(0) + (emissions[:, t + 1] + beta).unsqueeze(1)
            # (batch, num_tags)
            beta = torch.where(
                mask[:, t + 1].unsqueeze(1), torch.logsumexp(step, dim=2), end.unsqueeze(0)
            )
            betas.append(beta)
        # (batch, seq_len, num_tags)
        beta_all = torch.stack(betas[::-1], dim=1)
        log_z = torch.logsumexp(alphas[:, -1] + end.unsqueeze(0), dim=1)
        return torch.exp(alphas + beta_all - log_z.view(-1, 1, 1))

    def decode(
        self, emissions: torch.Tensor, mask: torch.Tensor
    ) -> tuple[list[list[int]], list[list[float]]]:
        """Inference: best paths and each chosen tag's marginal probability, cut to length.

        Runs in NumPy (see :mod:`model.crf_decode`): at serving sizes per-op overhead, not
        arithmetic, is the cost, and NumPy's is far smaller than torch's.
        """
        self._check(emissions, mask)
        return self.decode_lengths(emissions, mask.sum(1))

    def decode_lengths(
        self, emissions: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[list[list[int]], list[list[float]]]:
        """:meth:`decode` from sequence lengths (batch,), each in 1..seq_len, instead of a
        mask: what inference has, without building and checking a mask."""
        if emissions.dim() != 3 or emissions.size(2) != self.num_tags:
            raise ValueError(
                f"expected emissions of shape (batch, seq_len, {self.num_tags}), "
                f"got {tuple(emissions.shape)}"
            )
        transitions, start, end = self._numpy_scores()
        # (batch, seq_len, num_tags), float32: crf_decode reads it as float64
        scores = emissions.detach().cpu().numpy()
        sizes = lengths.cpu().numpy()
        if sizes.shape != scores.shape[:1] or (
            sizes.size and (sizes.min() < 1 or sizes.max() > scores.shape[1])
        ):
            got = f"{sizes.size} from {sizes.min()} to {sizes.max()}" if sizes.size else "none"
            raise ValueError(
                f"expected {scores.shape[0]} lengths in 1..{scores.shape[1]}, got {got}"
            )
        paths, chosen = crf_decode.decode(scores, sizes, transitions, start, end)
        if chosen is None:
            mask = torch.arange(emissions.size(1), device=lengths.device) < lengths.unsqueeze(1)
            fallback = self._log_space_marginals(emissions, mask.to(emissions.device)).detach()
            probabilities = fallback.double().cpu().numpy()
            chosen = [
                probabilities[b, np.arange(len(path)), path].tolist()
                for b, path in enumerate(paths)
            ]
        return paths, chosen

    def _numpy_scores(self) -> tuple[np.ndarray, ...]:
        """:attr:`transition_scores` as float64 NumPy, recomputed only when a parameter changed."""
        parameters = (self.transitions, self.start_transitions, self.end_transitions)
        key = tuple(x for p in parameters for x in (p._version, p.data_ptr()))
        if self._numpy_scores_cache is None or self._numpy_scores_cache[0] != key:
            arrays = tuple(t.detach().double().cpu().numpy() for t in self.transition_scores)
            self._numpy_scores_cache = (key, arrays)
        return self._numpy_scores_cache[1]
