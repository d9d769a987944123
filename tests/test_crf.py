"""The CRF against brute-force enumeration of every tag path (pytorch-crf / AllenNLP style)."""

from __future__ import annotations

import itertools

import pytest
import torch

from tagserve.model.crf import CRF
from tagserve.model.schemes import allowed_transitions, first_violation, labels_for


def path_score(crf: CRF, emissions: torch.Tensor, path: tuple[int, ...]) -> torch.Tensor:
    transitions, start, end = crf._scores()
    score = start[path[0]] + emissions[0, path[0]]
    for previous, current, t in zip(path, path[1:], range(1, len(path)), strict=False):
        score = score + transitions[previous, current] + emissions[t, current]
    return score + end[path[-1]]


def random_case(
    seed: int, num_tags: int, lengths: list[int]
) -> tuple[CRF, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    crf = CRF(num_tags)
    emissions = torch.randn(len(lengths), max(lengths), num_tags)
    mask = torch.tensor([[t < n for t in range(max(lengths))] for n in lengths])
    return crf, emissions, mask


@pytest.mark.parametrize("seed", range(4))
def test_log_partition_equals_brute_force(seed: int) -> None:
    crf, emissions, mask = random_case(seed, num_tags=5, lengths=[3, 2, 1])
    log_z = crf.log_partition(emissions, mask)
    for b, n in enumerate([3, 2, 1]):
        scores = [path_score(crf, emissions[b], p) for p in itertools.product(range(5), repeat=n)]
        assert log_z[b].item() == pytest.approx(
            torch.logsumexp(torch.stack(scores), 0).item(), abs=1e-4
        )


@pytest.mark.parametrize("seed", range(4))
def test_viterbi_equals_brute_force_argmax(seed: int) -> None:
    crf, emissions, mask = random_case(seed, num_tags=4, lengths=[3, 1, 2])
    paths = crf.viterbi(emissions, mask)
    for b, n in enumerate([3, 1, 2]):
        candidates = list(itertools.product(range(4), repeat=n))
        best = max(candidates, key=lambda p: path_score(crf, emissions[b], p).item())
        assert tuple(paths[b]) == best


def test_marginals_equal_brute_force() -> None:
    crf, emissions, mask = random_case(7, num_tags=4, lengths=[3, 2])
    marginals = crf.marginals(emissions, mask)
    for b, n in enumerate([3, 2]):
        paths = list(itertools.product(range(4), repeat=n))
        log_z = torch.logsumexp(torch.stack([path_score(crf, emissions[b], p) for p in paths]), 0)
        expected = torch.zeros(n, 4)
        for p in paths:
            probability = torch.exp(path_score(crf, emissions[b], p) - log_z)
            for t, k in enumerate(p):
                expected[t, k] += probability
        assert torch.allclose(marginals[b, :n], expected, atol=1e-5)
        assert torch.allclose(marginals[b, :n].sum(1), torch.ones(n), atol=1e-5)


def test_probability_space_marginals_match_log_space_even_with_huge_emissions() -> None:
    crf, emissions, mask = random_case(11, num_tags=5, lengths=[6, 4, 1])
    expected = crf._log_space_marginals(emissions, mask)[mask]
    assert torch.allclose(crf.marginals(emissions, mask)[mask], expected, atol=1e-5)
    # Scores this far apart underflow float64 in probability space: the fallback must answer.
    extreme = emissions * 2000
    marginals = crf.marginals(extreme, mask)
    assert torch.isfinite(marginals[mask]).all()
    # At scores of ~1e4, float32 log space itself rounds by ~1e-3: compare at that precision.
    assert torch.allclose(marginals[mask], crf._log_space_marginals(extreme, mask)[mask], atol=5e-3)


def test_log_partition_survives_scores_that_underflow_probability_space() -> None:
    crf, emissions, mask = random_case(13, num_tags=4, lengths=[3, 2])
    extreme = emissions * 1000
    paths = list(itertools.product(range(4), repeat=3))
    exact = torch.logsumexp(torch.stack([path_score(crf, extreme[0], p) for p in paths]), 0)
    assert crf.log_partition(extreme, mask)[0].item() == pytest.approx(exact.item(), rel=1e-4)


def test_log_partition_gradient_matches_log_space() -> None:
    crf, emissions, mask = random_case(17, num_tags=6, lengths=[5, 3, 4])
    emissions.requires_grad_(True)
    crf.log_partition(emissions, mask).sum().backward()
    scaled_grad = emissions.grad.clone()
    emissions.grad = None
    _, _, end = crf._scores()
    torch.logsumexp(crf._alphas(emissions, mask)[:, -1] + end, dim=1).sum().backward()
    assert torch.allclose(scaled_grad, emissions.grad, atol=1e-5)


def test_log_likelihood_of_gold_path() -> None:
    crf, emissions, mask = random_case(3, num_tags=4, lengths=[3, 2])
    tags = torch.tensor([[1, 2, 3], [0, 3, 0]])
    log_z = crf.log_partition(emissions, mask)
    expected = torch.stack(
        [path_score(crf, emissions[0], (1, 2, 3)), path_score(crf, emissions[1], (0, 3))]
    )
    assert torch.allclose(crf.log_likelihood(emissions, tags, mask), expected - log_z, atol=1e-5)


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_constrained_decoding_never_emits_a_forbidden_transition(scheme: str) -> None:
    labels = labels_for(["PER", "LOC"], scheme)  # type: ignore[arg-type]
    crf = CRF(len(labels), allowed_transitions(labels, scheme))  # type: ignore[arg-type]
    torch.manual_seed(0)
    with torch.no_grad():
        # Push the unconstrained optimum towards forbidden moves.
        crf.transitions.normal_(0, 5)
        crf.start_transitions.normal_(0, 5)
        crf.end_transitions.normal_(0, 5)
    emissions = torch.randn(64, 9, len(labels)) * 5
    lengths = torch.randint(1, 10, (64,))
    mask = torch.arange(9).unsqueeze(0) < lengths.unsqueeze(1)
    for path in crf.viterbi(emissions, mask):
        assert first_violation([labels[k] for k in path], scheme) is None  # type: ignore[arg-type]


def test_padding_does_not_change_results() -> None:
    crf, emissions, _ = random_case(5, num_tags=5, lengths=[4])
    padded = torch.cat([emissions, torch.randn(1, 3, 5)], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    assert crf.viterbi(emissions, torch.ones(1, 4, dtype=torch.bool)) == crf.viterbi(padded, mask)
    assert torch.allclose(
        crf.log_partition(emissions, torch.ones(1, 4, dtype=torch.bool)),
        crf.log_partition(padded, mask),
    )


def test_bad_shapes_are_rejected_with_expected_and_actual() -> None:
    crf = CRF(5)
    with pytest.raises(
        ValueError, match="expected emissions of shape \\(batch, seq_len, 5\\), got \\(2, 3, 4\\)"
    ):
        crf.viterbi(torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))


@pytest.mark.parametrize("seed", range(3))
def test_numpy_decode_equals_torch_viterbi_and_marginals(seed: int) -> None:
    labels = labels_for(["PER", "LOC"], "BIOES")
    crf = CRF(len(labels), allowed_transitions(labels, "BIOES"))
    torch.manual_seed(seed)
    with torch.no_grad():
        crf.transitions.normal_(0, 2)
    emissions = torch.randn(16, 7, len(labels)) * 3
    lengths = torch.randint(1, 8, (16,))
    mask = torch.arange(7).unsqueeze(0) < lengths.unsqueeze(1)
    paths, scores = crf.decode(emissions, mask)
    assert paths == crf.viterbi(emissions, mask)
    marginals = crf._log_space_marginals(emissions, mask)
    for b, path in enumerate(paths):
        expected = [marginals[b, t, k].item() for t, k in enumerate(path)]
        assert scores[b] == pytest.approx(expected, abs=1e-5)
