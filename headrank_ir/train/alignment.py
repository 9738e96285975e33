"""Preference alignment in attention space: train head weights and q/k LoRA on the pair loss.

One optimiser step per training query: one truncated forward (with gradients) scores all its
candidates, the hard adjacent-level pairs are chosen under those very scores (the current
scorer), and ``objective.objective`` is minimised. Queries come in a seeded order, there is no
dropout, and a checkpoint (adapter, weights, optimiser, step) is written every
``checkpoint_every`` steps, so a resumed run takes exactly the steps an uninterrupted one would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from headrank_ir.atomic import write_atomic_with
from headrank_ir.engine.adapter import AdapterSpec, add_lora, load_lora_state, lora_state
from headrank_ir.engine.profile import HeadProfile
from headrank_ir.evaluation.selectivity import middle_zone
from headrank_ir.train.examples import HeadFeatures, TrainingQuery
from headrank_ir.train.objective import Regularizer, objective, standardise
from headrank_ir.train.pairs import adjacent_pairs, choose_pairs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlignConfig:
    epochs: int = 1
    lr: float = 1e-3  # LoRA factors
    head_lr: float = 1e-3  # head weights (kept at mean |w| = 1 during training)
    temperature: float = 0.5  # tau of the pair loss, in standardised score units
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_layers: tuple[int, ...] | None = None  # None: every layer below the profile's depth
    max_pairs: int = 32  # per query, hardest first
    hard_margin: float = 0.5  # a pair is hard below this standardised margin
    regularizer: Regularizer | None = field(default_factory=Regularizer)
    checkpoint_every: int = 10
    max_grad_norm: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1 or self.lr <= 0 or self.head_lr < 0 or self.temperature <= 0:
            raise ValueError(f"epochs, lr and temperature must be positive (head_lr >= 0), got {self}")
        if self.max_pairs < 1 or self.checkpoint_every < 1:
            raise ValueError(f"max_pairs and checkpoint_every must be positive, got {self}")

    def to_json(self) -> dict:
        data = asdict(self)
        data["lora_layers"] = list(self.lora_layers) if self.lora_layers is not None else None
        return data


@dataclass(frozen=True)
class Aligned:
    """The trained profile heads (same order, new weights) and adapter."""

    heads: tuple[tuple[int, int, float], ...]
    adapter: dict[str, torch.Tensor]
    spec: AdapterSpec
    history: list[dict[str, float]]


def adapter_spec(profile: HeadProfile, config: AlignConfig) -> AdapterSpec:
    layers = config.lora_layers if config.lora_layers is not None else tuple(range(profile.depth))
    if any(not 0 <= layer < profile.depth for layer in layers):
        raise ValueError(
            f"LoRA layers {list(layers)} must lie below the profile's depth {profile.depth}: deeper ones never run"
        )
    return AdapterSpec(config.lora_rank, config.lora_alpha, tuple(sorted(set(layers))))


def align(
    model,
    tokenizer,
    profile: HeadProfile,
    queries: Sequence[TrainingQuery],
    references: Mapping[str, torch.Tensor],
    config: AlignConfig,
    checkpoint: Path | None = None,
    progress: bool = True,
) -> Aligned:
    """Train ``profile``'s head weights and a LoRA on ``model`` (modified in place).

    ``references[qid]`` are the frozen reference scores of the query's candidates (what
    ``profile`` gives before training), used by the regulariser. Queries without an
    adjacent-level pair are skipped: they would only feed the regulariser. With ``checkpoint``,
    a checkpoint there is resumed and new ones are written to it.
    """
    trainer = Trainer(model, tokenizer, profile, queries, references, config)
    if checkpoint is not None and checkpoint.exists():
        trainer.restore(checkpoint)
        logger.info(
            "resuming from %s at step %d of %d",
            checkpoint,
            len(trainer.history),
            len(trainer.schedule),
        )
    trainer.run(checkpoint, progress)
    return trainer.result()


def query_schedule(count: int, epochs: int, seed: int) -> list[int]:
    """Query indices for every step: a fresh seeded permutation per epoch."""
    generator = torch.Generator().manual_seed(seed)
    return [i for _ in range(epochs) for i in torch.randperm(count, generator=generator).tolist()]


def query_objective(
    scores: torch.Tensor,
    query: TrainingQuery,
    reference: torch.Tensor | None,
    profile: HeadProfile,
    config: AlignConfig,
):
    """The objective of one query's candidate ``scores``, its pairs picked under those very scores
    (the current scorer) and the middle zone from where ``profile``'s prompt shows each one."""
    shown_middle = middle_zone(query.docids, profile.prompt)
    middle = [i for i, docid in enumerate(query.docids) if docid in shown_middle]
    current = standardise(scores.detach()).tolist()
    pairs = choose_pairs(query.grades, current, set(middle), config.max_pairs, config.hard_margin)
    return objective(scores, pairs, config.temperature, reference, middle, config.regularizer)


def align_weights(
    features: HeadFeatures,
    queries: Sequence[TrainingQuery],
    profile: HeadProfile,
    config: AlignConfig,
) -> tuple[tuple[int, int, float], ...]:
    """``profile``'s head weights trained on the objective from cached head features: what
    :func:`align` does to the weights with the model frozen (no LoRA, so no forward: seconds, not
    hours). ``config.lr`` (the LoRA's) is unused; the references are the initial weights' scores."""
    chosen = [(layer, head) for layer, head, _ in profile.heads]
    rows = features.rows(chosen)
    initial = torch.tensor([w for _, _, w in profile.heads])
    weights = torch.nn.Parameter(initial / initial.abs().mean())
    optimiser = torch.optim.Adam([weights], lr=config.head_lr)
    trainable = [q for q in queries if adjacent_pairs(q.grades)]
    if not trainable:
        raise ValueError("no training query has two candidates whose grades differ by exactly one")
    for index in query_schedule(len(trainable), config.epochs, config.seed):
        query = trainable[index]
        block = features.scores[query.qid][rows]
        loss, _ = query_objective(weights @ block, query, initial @ block, profile, config)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([weights], config.max_grad_norm)
        optimiser.step()
    final = weights.detach() / weights.detach().abs().sum()
    return tuple((layer, head, float(w)) for (layer, head), w in zip(chosen, final))


class Trainer:
    """The state of one alignment run: adapter, head weights, optimiser, steps taken."""

    def __init__(self, model, tokenizer, profile, queries, references, config: AlignConfig):
        from headrank_ir.engine.ranker import HeadRanker

        self.queries = [q for q in queries if adjacent_pairs(q.grades)]
        if not self.queries:
            raise ValueError("no training query has two candidates whose grades differ by exactly one")
        self.spec = adapter_spec(profile, config)
        torch.manual_seed(config.seed)  # the LoRA A factors are drawn at injection
        add_lora(model, self.spec)
        self.reader = HeadRanker(model, tokenizer, replace(profile, adapter=None)).reader
        self.profile, self.references, self.config = profile, references, config
        self.order = [(layer, head) for layer, heads, _ in profile.heads_by_layer() for head in heads]
        weights = [w for _, _, layer_weights in profile.heads_by_layer() for w in layer_weights]
        initial = torch.tensor(weights, device=self.reader.device)  # where the head scores are
        self.weights = torch.nn.Parameter(initial / initial.abs().mean())
        self.lora = [p for p in model.parameters() if p.requires_grad]
        self.optimiser = torch.optim.Adam(
            [
                {"params": self.lora, "lr": config.lr},
                {"params": [self.weights], "lr": config.head_lr},
            ]
        )
        self.schedule = query_schedule(len(self.queries), config.epochs, config.seed)
        self.history: list[dict[str, float]] = []
        precision = str(model.dtype).removeprefix("torch.")
        self.fingerprint = {
            "config": config.to_json(),
            "heads": [list(h) for h in self.order],
            "queries": [q.qid for q in self.queries],
            # a precision other than float32 is named (float32 checkpoints keep resuming as written)
            **({"dtype": precision} if precision != "float32" else {}),
        }

    def run(self, checkpoint: Path | None, progress: bool = True) -> None:
        from headrank_ir.progress import progress as progress_bar

        total = len(self.schedule)
        with progress_bar(
            total=total,
            initial=len(self.history),
            desc="aligning",
            unit="query",
            disable=not progress,
            dynamic_ncols=True,
        ) as bar:
            for step in range(len(self.history), total):
                self.step(self.queries[self.schedule[step]])
                recent = self.history[-10:]
                bar.set_postfix_str(f"loss {sum(h['loss'] for h in recent) / len(recent):.3f}")
                bar.update(1)
                if checkpoint is not None and (step + 1) % self.config.checkpoint_every == 0:
                    self.save(checkpoint)

    def step(self, query: TrainingQuery) -> None:
        began = time.perf_counter()
        loss, parts = self.loss(query)
        self.optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*self.lora, self.weights], self.config.max_grad_norm)
        self.optimiser.step()
        self.history.append({**parts, "loss": loss.item(), "seconds": time.perf_counter() - began})

    def loss(self, query: TrainingQuery):
        """Score the query's candidates with gradients and return its objective and parts."""
        scores = self.weights @ self.reader.head_scores(query.text, query.passages)
        reference = self.references.get(query.qid)
        return query_objective(
            scores, query, None if reference is None else reference.to(scores.device), self.profile, self.config
        )

    def result(self) -> Aligned:
        final = self.weights.detach() / self.weights.detach().abs().sum()  # sum |w| = 1: same ranking
        heads = tuple((layer, head, float(w)) for (layer, head), w in zip(self.order, final))
        return Aligned(heads, lora_state(self.reader.model), self.spec, list(self.history))

    def save(self, path: Path) -> None:
        state = {
            "fingerprint": self.fingerprint,
            "lora": lora_state(self.reader.model),
            "weights": self.weights.detach().clone(),
            "optimiser": self.optimiser.state_dict(),
            "history": self.history,
        }
        # an interruption while writing leaves the previous checkpoint whole
        write_atomic_with(path, lambda handle: torch.save(state, handle))

    def restore(self, path: Path) -> None:
        state = torch.load(path, weights_only=True)
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(
                f"checkpoint {path} was written by a training with other settings, precision, heads or queries; "
                "rerun with the same flags, or delete it to start over"
            )
        load_lora_state(self.reader.model, state["lora"])
        with torch.no_grad():
            self.weights.copy_(state["weights"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.history = list(state["history"])
