"""The alignment objective on one query's attention-derived passage scores.

With ``s`` the profile's scores of the query's ``n`` candidates (weighted calibrated head
scores), ``z = (s - mean(s)) / (std(s) + 1e-6)`` (population std; the ranking, which is all
inference uses, is unchanged by this), pairs ``P`` from ``pairs.choose_pairs`` and ``M`` the
candidates shown in the middle half of the context::

    L = 1/|P| sum_{(i > j) in P} log(1 + exp(-(z_i - z_j) / tau))            Bradley–Terry
      + beta  * sum_i p_ref(i) * (log p_ref(i) - log p(i))                     reference KL
      + gamma * max(0, 1 - std_{i in M}(z_i))^2                                middle spread

    p = softmax(z / tau_r),  p_ref = softmax(z_ref / tau_r)

``z_ref`` are the same standardised scores from the frozen reference (the selected heads with
their initial weights, no adapter). Why these two terms:

- The KL term is distillation towards the reference's whole score distribution. The pairs only
  cover judged candidates at adjacent grades; with a few hundred queries, the LoRA can otherwise
  reorder everything else freely and overfit. KL(p_ref || p) (not the reverse) penalises most
  where the reference puts mass, i.e. it keeps the head of the reference ranking in place unless
  a pair argues against it.
- The middle-spread term fights homogenisation: since ``z`` has unit std over all candidates,
  ``std_M(z) < 1`` means the middle half of the context is scored flatter than the list as a
  whole, the paper's symptom (middle passages indistinguishable, so neither relevant nor
  irrelevant ones reach the top). The squared hinge is zero once the middle zone is as spread
  as the list, so it never pushes further than that and cannot fight the pairs on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from headrank_ir.train.pairs import Pair

EPS = 1e-6


@dataclass(frozen=True)
class Regularizer:
    reference_weight: float = 1.0  # beta
    middle_weight: float = 1.0  # gamma
    temperature: float = 1.0  # tau_r

    def __post_init__(self):
        if self.temperature <= 0 or self.reference_weight < 0 or self.middle_weight < 0:
            raise ValueError(f"regulariser weights must be >= 0 and its temperature > 0, got {self}")


def standardise(scores: torch.Tensor) -> torch.Tensor:
    return (scores - scores.mean()) / (scores.std(unbiased=False) + EPS)


def pair_loss(z: torch.Tensor, pairs: Sequence[Pair], temperature: float) -> torch.Tensor:
    """Mean Bradley–Terry (logistic) loss of the pairs; 0 without pairs."""
    if not pairs:
        return z.sum() * 0.0  # keeps the graph, so a step without pairs still runs the regulariser
    better = torch.tensor([p.better for p in pairs], device=z.device)
    worse = torch.tensor([p.worse for p in pairs], device=z.device)
    return torch.nn.functional.softplus(-(z[better] - z[worse]) / temperature).mean()


def reference_kl(z: torch.Tensor, z_ref: torch.Tensor, temperature: float) -> torch.Tensor:
    log_p = torch.log_softmax(z / temperature, dim=-1)
    log_ref = torch.log_softmax(z_ref / temperature, dim=-1)
    return (log_ref.exp() * (log_ref - log_p)).sum()


def middle_spread(z: torch.Tensor, middle: Sequence[int]) -> torch.Tensor:
    if len(middle) < 2:
        return z.sum() * 0.0
    return torch.relu(1.0 - z[torch.tensor(list(middle), device=z.device)].std(unbiased=False)) ** 2


def objective(
    scores: torch.Tensor,
    pairs: Sequence[Pair],
    temperature: float,
    reference: torch.Tensor | None = None,
    middle: Sequence[int] = (),
    regularizer: Regularizer | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one query (formula in the module docstring) and its parts, for logging."""
    z = standardise(scores)
    loss = pair_loss(z, pairs, temperature)
    parts = {"pairs": loss.item()}
    if regularizer is not None:
        if reference is None:
            raise ValueError("the regulariser needs the reference model's scores")
        kl = reference_kl(z, standardise(reference), regularizer.temperature)
        spread = middle_spread(z, middle)
        loss = loss + regularizer.reference_weight * kl + regularizer.middle_weight * spread
        parts.update(kl=kl.item(), spread=spread.item())
    return loss, parts
