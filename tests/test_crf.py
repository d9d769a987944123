"""The CRF's public API against brute-force enumeration of every tag path and against the
plain log-space references in ``tests/crf_reference.py`` (pytorch-crf / AllenNLP style)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tagserve.model import crf_decode
from tagserve.model.crf import CRF
from tagserve.model.schemes import allowed_transitions, first_violation, labels_for
from tests import crf_reference


def path_score(crf: CRF, emissions: torch.Tensor, path: tuple[int, ...]) -> torch.Tensor:
    transitions, start, end = crf.transition_scores
    score = start[path[0]] + emissions[0, path[0]]
    for previous, current, t in zip(path, path[1:], range(1, len(path)), strict=False):
        score = score + transitions[previous, current] + emissions[t, current]
    return score + end[path[-1]]


def brute_force_marginals(crf: CRF, emissions: torch.Tensor, n: int) -> torch.Tensor:
    """(n, num_tags) marginals of one sequence, summing the probability of every path."""
    num_tags = emissions.size(1)
    paths = list(itertools.product(range(num_tags), repeat=n))
    log_z = torch.logsumexp(torch.stack([path_score(crf, emissions, p) for p in paths]), 0)
    expected = torch.zeros(n, num_tags)
    for p in paths:
        probability = torch.exp(path_score(crf, emissions, p) - log_z)
        for t, k in enumerate(p):
            expected[t, k] += probability
    return expected


def random_case(
    seed: int, num_tags: int, lengths: list[int]
) -> tuple[CRF, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    crf = CRF(num_tags)
    emissions = torch.randn(len(lengths), max(lengths), num_tags)
    mask = torch.tensor([[t < n for t in range(max(lengths))] for n in lengths])
    return crf, emissions, mask


def constrained_case(seed: int, scale: float) -> tuple[CRF, torch.Tensor, torch.Tensor]:
    labels = labels_for(["PER", "LOC"], "BIOES")
    crf = CRF(len(labels), allowed_transitions(labels, "BIOES"))
    torch.manual_seed(seed)
    with torch.no_grad():
        crf.transitions.normal_(0, 2)
    emissions = torch.randn(16, 7, len(labels)) * scale
    lengths = torch.randint(1, 8, (16,))
    mask = torch.arange(7).unsqueeze(0) < lengths.unsqueeze(1)
    return crf, emissions, mask


def test_transition_scores_are_the_parameters_with_forbidden_moves_pushed_down() -> None:
    crf = CRF(3, {(0, 1), (1, 1), (3, 0), (1, 4)})
    transitions, start, end = crf.transition_scores
    assert transitions[0, 1] == crf.transitions[0, 1] and transitions[1, 1] == crf.transitions[1, 1]
    assert transitions[1, 0] == transitions[2, 2] == -10000.0
    assert start.tolist() == [crf.start_transitions[0].item(), -10000.0, -10000.0]
    assert end.tolist() == [-10000.0, crf.end_transitions[1].item(), -10000.0]


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
def test_decode_paths_equal_brute_force_argmax(seed: int) -> None:
    crf, emissions, mask = random_case(seed, num_tags=4, lengths=[3, 1, 2])
    paths, _ = crf.decode(emissions, mask)
    assert paths == crf_reference.viterbi(crf, emissions, mask)
    for b, n in enumerate([3, 1, 2]):
        candidates = list(itertools.product(range(4), repeat=n))
        best = max(candidates, key=lambda p: path_score(crf, emissions[b], p).item())
        assert tuple(paths[b]) == best


def test_decode_scores_and_reference_marginals_equal_brute_force() -> None:
    crf, emissions, mask = random_case(7, num_tags=4, lengths=[3, 2])
    paths, scores = crf.decode(emissions, mask)
    reference = crf_reference.marginals(crf, emissions, mask)
    for b, n in enumerate([3, 2]):
        expected = brute_force_marginals(crf, emissions[b], n)
        assert torch.allclose(reference[b, :n], expected, atol=1e-5)
        chosen = [expected[t, k].item() for t, k in enumerate(paths[b])]
        assert scores[b] == pytest.approx(chosen, abs=1e-5)


def test_decode_survives_scores_that_underflow_probability_space() -> None:
    crf, emissions, mask = constrained_case(11, scale=2000)
    # The NumPy forward-backward gives up on these (scores ~1e4 apart); decode must not.
    transitions, start, end = (x.detach().double().numpy() for x in crf.transition_scores)
    lengths = mask.sum(1).numpy()
    assert (
        crf_decode.marginals(emissions.double().numpy(), lengths, transitions, start, end) is None
    )
    paths, scores = crf.decode(emissions, mask)
    assert paths == crf_reference.viterbi(crf, emissions, mask)
    reference = crf_reference.marginals(crf, emissions.double(), mask)
    for b, path in enumerate(paths):
        assert np.isfinite(scores[b]).all()
        expected = [reference[b, t, k].item() for t, k in enumerate(path)]
        # At scores of ~1e4, float32 log space itself rounds by ~1e-3: compare at that precision.
        assert scores[b] == pytest.approx(expected, abs=5e-3)


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
    crf_reference.log_partition(crf, emissions, mask).sum().backward()
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
    paths, _ = crf.decode(emissions, mask)
    for path in paths:
        assert first_violation([labels[k] for k in path], scheme) is None  # type: ignore[arg-type]


def test_padding_does_not_change_results() -> None:
    crf, emissions, _ = random_case(5, num_tags=5, lengths=[4])
    # Padding past every sequence, as well as past a shorter one.
    padded = torch.cat([emissions, torch.randn(1, 3, 5)], dim=1)
    unpadded_mask = torch.ones(1, 4, dtype=torch.bool)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    paths, scores = crf.decode(emissions, unpadded_mask)
    padded_paths, padded_scores = crf.decode(padded, mask)
    assert padded_paths == paths
    assert padded_scores[0] == pytest.approx(scores[0], abs=1e-12)
    assert torch.allclose(
        crf.log_partition(emissions, unpadded_mask), crf.log_partition(padded, mask)
    )
    longer = torch.cat([padded, torch.randn(1, 7, 5)])
    both = crf.decode(longer, torch.cat([mask, torch.ones(1, 7, dtype=torch.bool)]))
    assert both[0][0] == paths[0]
    assert both[1][0] == pytest.approx(scores[0], abs=1e-12)


def test_bad_shapes_are_rejected_with_expected_and_actual() -> None:
    crf = CRF(5)
    with pytest.raises(
        ValueError, match="expected emissions of shape \\(batch, seq_len, 5\\), got \\(2, 3, 4\\)"
    ):
        crf.decode(torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))


@pytest.mark.parametrize("seed", range(3))
def test_decode_equals_reference_viterbi_and_marginals(seed: int) -> None:
    crf, emissions, mask = constrained_case(seed, scale=3)
    paths, scores = crf.decode(emissions, mask)
    assert paths == crf_reference.viterbi(crf, emissions, mask)
    marginals = crf_reference.marginals(crf, emissions, mask)
    for b, path in enumerate(paths):
        expected = [marginals[b, t, k].item() for t, k in enumerate(path)]
        assert scores[b] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_one_sentence_decodes_as_it_does_in_any_batch(seed: int) -> None:
    # decode has a path of its own for one sentence and one for a batch, which reorders
    # rows unless they come longest first (as the predictor sends them): all must agree.
    crf, emissions, mask = constrained_case(seed, scale=3)
    lengths = mask.sum(1)
    paths, scores = crf.decode(emissions, mask)
    order = torch.argsort(lengths, descending=True, stable=True)
    sorted_paths, sorted_scores = crf.decode(emissions[order], mask[order])
    assert sorted_paths == [paths[i] for i in order.tolist()]
    assert sorted_scores == [scores[i] for i in order.tolist()]
    for b, n in enumerate(lengths.tolist()):
        # Alone, unpadded and padded past its end.
        for width in (n, 7):
            alone_paths, alone_scores = crf.decode(
                emissions[b : b + 1, :width], mask[b : b + 1, :width]
            )
            assert alone_paths == [paths[b]]
            assert alone_scores[0] == pytest.approx(scores[b], abs=1e-12)


def test_one_sentence_survives_scores_that_underflow_probability_space() -> None:
    crf, emissions, mask = constrained_case(11, scale=2000)
    n = int(mask[0].sum())
    paths, scores = crf.decode(emissions[:1, :n], mask[:1, :n])
    reference = crf_reference.marginals(crf, emissions[:1, :n].double(), mask[:1, :n])
    assert paths == crf_reference.viterbi(crf, emissions[:1, :n], mask[:1, :n])
    expected = [reference[0, t, k].item() for t, k in enumerate(paths[0])]
    assert scores[0] == pytest.approx(expected, abs=5e-3)


def test_decode_from_lengths_rejects_lengths_outside_the_sequence() -> None:
    crf = CRF(5)
    emissions = torch.randn(2, 3, 5)
    assert crf.decode_lengths(emissions, torch.tensor([3, 1])) == crf.decode(
        emissions, torch.tensor([[True, True, True], [True, False, False]])
    )
    for lengths in ([0, 2], [4, 2], [3]):
        with pytest.raises(ValueError, match=r"expected 2 lengths in 1\.\.3, got"):
            crf.decode_lengths(emissions, torch.tensor(lengths))
