"""The alignment objective's parts against values worked out with numpy from the formula in
``train/objective.py``'s docstring (issue 28: the KL and spread weights, the KL direction and the
population std went unpinned)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headrank_ir.train.objective import Regularizer, objective, reference_kl, standardise
from headrank_ir.train.pairs import Pair

EPS = 1e-6
SCORES = [0.9, -0.3, 0.4, 2.1, 0.0, -1.2]
REFERENCE = [0.1, 0.8, -0.5, 0.3, 1.7, -0.2]  # ranks the candidates quite differently


def z_of(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return (values - values.mean()) / (np.std(values, ddof=0) + EPS)


def log_softmax(x: np.ndarray) -> np.ndarray:
    return x - np.log(np.exp(x - x.max()).sum()) - x.max()


def kl(p_log: np.ndarray, q_log: np.ndarray) -> float:
    """KL(p || q) from log-probabilities."""
    return float((np.exp(p_log) * (p_log - q_log)).sum())


def test_standardised_scores_have_population_std_one():
    z = standardise(torch.tensor(SCORES, dtype=torch.float64)).numpy()
    assert np.std(z, ddof=0) == pytest.approx(1.0, abs=1e-5)
    assert z.mean() == pytest.approx(0.0, abs=1e-12)
    assert z == pytest.approx(z_of(SCORES), abs=1e-9)
    # four values: population std sqrt(5/4) differs from the sample std sqrt(5/3)
    assert standardise(torch.tensor([0.0, 1.0, 2.0, 3.0])).tolist() == pytest.approx(
        [v / (1.25**0.5 + EPS) for v in (-1.5, -0.5, 0.5, 1.5)], abs=1e-6
    )


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_reference_kl_is_kl_of_the_reference_from_the_current_scores(temperature):
    z, z_ref = z_of(SCORES), z_of(REFERENCE)
    p_log, ref_log = log_softmax(z / temperature), log_softmax(z_ref / temperature)
    forward, backward = kl(ref_log, p_log), kl(p_log, ref_log)
    assert abs(forward - backward) > 0.05  # the direction shows in the value
    value = reference_kl(torch.tensor(z), torch.tensor(z_ref), temperature)
    assert float(value) == pytest.approx(forward, rel=1e-6)


def test_loss_is_pairs_plus_weighted_kl_plus_weighted_spread():
    tau, tau_r, beta, gamma = 0.5, 0.7, 0.3, 2.5
    pairs = [Pair(0, 1, True, 0), Pair(5, 2, True, 0)]
    middle = [1, 2, 4]
    z, z_ref = z_of(SCORES), z_of(REFERENCE)
    pair_part = np.mean([np.log1p(np.exp(-(z[p.better] - z[p.worse]) / tau)) for p in pairs])
    kl_part = kl(log_softmax(z_ref / tau_r), log_softmax(z / tau_r))
    spread_part = max(0.0, 1.0 - np.std(z[middle], ddof=0)) ** 2
    assert kl_part > 0.1 and spread_part > 0.1  # neither weight hides behind a zero

    loss, parts = objective(
        torch.tensor(SCORES, dtype=torch.float64),
        pairs,
        tau,
        reference=torch.tensor(REFERENCE, dtype=torch.float64),
        middle=middle,
        regularizer=Regularizer(reference_weight=beta, middle_weight=gamma, temperature=tau_r),
    )
    assert parts["pairs"] == pytest.approx(pair_part, rel=1e-6)
    assert parts["kl"] == pytest.approx(kl_part, rel=1e-6)
    assert parts["spread"] == pytest.approx(spread_part, rel=1e-6)
    assert float(loss) == pytest.approx(pair_part + beta * kl_part + gamma * spread_part, rel=1e-6)


def test_without_regulariser_the_loss_is_the_pair_loss_alone():
    z = z_of(SCORES)
    loss, parts = objective(torch.tensor(SCORES, dtype=torch.float64), [Pair(3, 5, True, 0)], 2.0)
    assert float(loss) == pytest.approx(np.log1p(np.exp(-(z[3] - z[5]) / 2.0)), rel=1e-6)
    assert set(parts) == {"pairs"}


def test_middle_spread_of_two_and_of_one_middle_candidate():
    z = z_of(SCORES)
    two = (1.0 - abs(z[0] - z[3]) / 2) ** 2  # the population std of two values is half their distance
    assert two > 0.05
    _, parts = objective(
        torch.tensor(SCORES, dtype=torch.float64),
        [],
        1.0,
        reference=torch.tensor(SCORES, dtype=torch.float64),
        middle=[0, 3],
        regularizer=Regularizer(0.0, 1.0),
    )
    assert parts["spread"] == pytest.approx(two, rel=1e-6)
    _, one = objective(
        torch.tensor(SCORES), [], 1.0, reference=torch.tensor(SCORES), middle=[2], regularizer=Regularizer()
    )
    assert one["spread"] == 0.0  # no spread to measure in one candidate


@pytest.mark.parametrize("weights", [(0.0, 0.0, 1e-3), (1.0, 1.0, 1.0)])
def test_regulariser_takes_zero_weights_and_any_positive_temperature(weights):
    assert Regularizer(*weights).temperature == weights[2]


@pytest.mark.parametrize("weights", [(-1e-9, 0.0, 1.0), (0.0, -1e-9, 1.0), (0.0, 0.0, 0.0), (1.0, 1.0, -1.0)])
def test_regulariser_refuses_negative_weights_and_a_temperature_not_above_zero(weights):
    with pytest.raises(ValueError, match="regulariser weights must be >= 0 and its temperature > 0"):
        Regularizer(*weights)
