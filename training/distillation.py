"""Knowledge distillation: a trained teacher artifact's per-token marginals as soft targets.

The student learns from the gold tags and from the teacher at once (Hinton et al., 2015;
for CRF taggers, Wang et al., 2020, "Structure-Level Knowledge Distillation"):

    loss = gold NLL + weight * T² * Σ_tokens KL(teacher marginals_T ‖ student marginals_T)

per sentence, averaged over the batch, like the CRF's NLL. ``marginals_T`` are the CRF's
forward-backward marginals with every potential (emissions, transitions, start, end) divided
by the temperature ``T`` (the sequence distribution p^(1/T), renormalised: softer for T > 1);
a softmax decoder's are ``softmax(emissions / T)``. T² keeps the soft term's gradients at the
same scale whatever T is. The student's marginals are differentiable (forward-backward in
torch); the teacher runs in eval mode, without gradients, on the student's device.

The teacher has its own vocabularies: each batch's tokens (after case augmentation, before
word dropout) are encoded with the teacher's word and character tables, and its labels are
matched to the student's by name. A teacher is deterministic, so its targets are kept per
distinct sentence (at most three casings of each): after the first epochs it costs no time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tagserve.model.artifact import ArtifactError, ModelBundle, load, resolve
from tagserve.model.encoding import EncodedBatch, encode
from tagserve.model.network import Tagger
from tagserve.model.vocab import LabelSet
from tagserve.training.config import Distillation


def label_map(teacher: LabelSet, student: LabelSet, source: str = "teacher") -> list[int]:
    """The teacher's index of each student label, or a ``ValueError`` naming what is missing."""
    index = {label: i for i, label in enumerate(teacher.labels)}
    missing = [label for label in student.labels if label not in index]
    if missing:
        raise ValueError(
            f"teacher {source} cannot teach this model: its labels ({teacher.scheme}, "
            f"{len(teacher.labels)}) lack {len(missing)} of the student's: {', '.join(missing)}"
        )
    return [index[label] for label in student.labels]


def crf_log_marginals(
    emissions: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """log P(tag at t | sentence) of a linear-chain CRF, (batch, seq_len, num_tags), by
    forward-backward in log space (differentiable); padding positions hold garbage."""
    seq_len = emissions.size(1)
    alpha = start.unsqueeze(0) + emissions[:, 0]
    alphas = [alpha]
    for t in range(1, seq_len):
        step = alpha.unsqueeze(2) + transitions.unsqueeze(0) + emissions[:, t].unsqueeze(1)
        alpha = torch.where(mask[:, t].unsqueeze(1), torch.logsumexp(step, dim=1), alpha)
        alphas.append(alpha)
    beta = end.unsqueeze(0).expand_as(alpha)
    betas = [beta]
    for t in range(seq_len - 2, -1, -1):
        step = transitions.unsqueeze(0) + (emissions[:, t + 1] + beta).unsqueeze(1)
        beta = torch.where(mask[:, t + 1].unsqueeze(1), torch.logsumexp(step, dim=2), beta)
        betas.append(beta)
    log_z = torch.logsumexp(alpha + end.unsqueeze(0), dim=1)
    return torch.stack(alphas, dim=1) + torch.stack(betas[::-1], dim=1) - log_z.view(-1, 1, 1)


def log_marginals(
    network: Tagger, emissions: torch.Tensor, mask: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``network``'s per-token log marginals at ``temperature`` (CRF or softmax decoder)."""
    if network.crf is None:
        return (emissions / temperature).log_softmax(dim=2)
    transitions, start, end = (x / temperature for x in network.crf.transition_scores)
    return crf_log_marginals(emissions / temperature, transitions, start, end, mask)


def soft_target_loss(
    target: torch.Tensor, student_log: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """KL(target ‖ student) summed over each sentence's real tokens, averaged over sentences.

    ``target``: probabilities, ``student_log``: log-probabilities, both (batch, seq_len, tags).
    """
    per_token = (torch.xlogy(target, target) - target * student_log).sum(dim=2)
    return per_token.masked_fill(~mask, 0.0).sum(dim=1).mean()


class Teacher:
    """A loaded teacher artifact, its labels in the student's order, and the loss it adds."""

    def __init__(self, bundle: ModelBundle, student: LabelSet, settings: Distillation) -> None:
        self.bundle = bundle
        self.source = str(settings.teacher)
        self.weight = settings.weight
        self.temperature = settings.temperature
        self.device = next(bundle.network.parameters()).device
        self.index = torch.tensor(
            label_map(bundle.labels, student, self.source), device=self.device
        )
        self._targets: dict[tuple[str, ...], torch.Tensor] = {}

    def describe(self) -> dict[str, Any]:
        """What the student's model card records of its teacher."""
        card = self.bundle.card
        return {
            "path": self.source,
            "name": card.name,
            "version": card.version,
            "hidden_size": self.bundle.config.hidden_size,
            "weight": self.weight,
            "temperature": self.temperature,
            "loss": "gold NLL + weight * T^2 * KL(teacher || student) of per-token marginals",
        }

    def targets(self, sentences: list[list[str]]) -> torch.Tensor:
        """The teacher's marginals at the temperature over the student's labels, padded with
        zeros: (batch, seq_len, student tags)."""
        new = list({tuple(s) for s in sentences if tuple(s) not in self._targets})
        if new:
            self._compute([list(s) for s in new])
        rows = [self._targets[tuple(s)] for s in sentences]
        return nn.utils.rnn.pad_sequence(rows, batch_first=True)

    @torch.no_grad()
    def _compute(self, sentences: list[list[str]]) -> None:
        network, bundle = self.bundle.network, self.bundle
        network.eval()
        for start in range(0, len(sentences), 256):
            chunk = sentences[start : start + 256]
            batch = encode(chunk, bundle.words, bundle.chars, network.config.max_word_chars)
            batch = batch.to(self.device)
            emissions = network.emissions(network.encode(network.features(batch), batch.lengths))
            probabilities = log_marginals(network, emissions, batch.mask, self.temperature).exp()
            # Over the student's labels only (a teacher may know more), renormalised.
            ours = probabilities[:, :, self.index]
            ours = ours / ours.sum(dim=2, keepdim=True).clamp(min=1e-12)
            for sentence, row in zip(chunk, ours, strict=True):
                self._targets[tuple(sentence)] = row[: len(sentence)].clone()

    def loss(
        self,
        network: Tagger,
        batch: EncodedBatch,
        gold: torch.Tensor,
        sentences: list[list[str]],
    ) -> torch.Tensor:
        """Gold NLL plus the weighted soft-target term, from one pass of the student."""
        emissions = network.emissions(network.encode(network.features(batch), batch.lengths))
        mask = batch.mask
        if network.crf is not None:
            gold_loss = -network.crf.log_likelihood(emissions, gold, mask).mean()
        else:
            gold_loss = nn.functional.cross_entropy(emissions[mask], gold[mask])
        if self.weight == 0:
            return gold_loss
        student = log_marginals(network, emissions, mask, self.temperature)
        soft = soft_target_loss(self.targets(sentences), student, mask)
        return gold_loss + self.weight * self.temperature**2 * soft


def load_teacher(
    settings: Distillation, student: LabelSet, has_intents: bool, device: str
) -> Teacher | None:
    """The configured teacher on ``device`` in eval mode, or None when none is configured."""
    if settings.teacher is None:
        return None
    if has_intents:
        raise ValueError("training.distillation: a teacher can only teach tags (model.intents)")
    try:
        bundle = load(resolve(settings.teacher), device)
    except ArtifactError as error:
        raise ValueError(f"training.distillation.teacher: {error}") from None
    bundle.network.requires_grad_(False)
    return Teacher(bundle, student, settings)
