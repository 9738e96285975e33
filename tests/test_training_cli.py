"""``python -m headrank_ir.train`` end to end on a tiny random Llama: profile and adapter round-trip."""

from __future__ import annotations

import json

import ir_measures
import pytest
import torch

from headrank_ir.engine.adapter import (
    AdapterSpec,
    add_lora,
    apply_adapter,
    load_adapter,
    load_lora_state,
)
from headrank_ir.engine.models import load_model
from headrank_ir.engine.profile import HeadProfile
from headrank_ir.engine.ranker import HeadRanker
from headrank_ir.train import cli as train

TEXTS = {
    "d1": "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "d2": "Bananas are rich in potassium and fibre.",
    "d3": "Gustave Eiffel's company built the tower between 1887 and 1889.",
    "d4": "Lobster rolls are a New England dish: lobster meat on a grilled bun.",
    "d5": "Paris hosts many towers; the Eiffel Tower is the tallest of them.",
    "d6": "Python first appeared in 1991.",
}
QUERIES = {"1": "when was the eiffel tower built?", "2": "what is a lobster roll"}
GRADES = {
    "1": {"d1": 3, "d3": 2, "d5": 1, "d2": 0, "d6": 0},
    "2": {"d4": 2, "d2": 1, "d6": 0, "d1": 0},
}


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    folder = tmp_path_factory.mktemp("collection")
    (folder / "topics.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()))
    (folder / "qrels.txt").write_text("".join(f"{q} 0 {d} {g}\n" for q, gs in GRADES.items() for d, g in gs.items()))
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"id": d, "contents": t}) + "\n" for d, t in TEXTS.items()))
    run = [f"{q} Q0 {d} {r} {10 - r} bm25\n" for q in QUERIES for r, d in enumerate(TEXTS, start=1)]
    (folder / "run.txt").write_text("".join(run))
    return folder


def arguments(collection, model_dir, output, *extra):
    files = [
        "--topics",
        "topics.tsv",
        "--qrels",
        "qrels.txt",
        "--run",
        "run.txt",
        "--corpus",
        "corpus.jsonl",
    ]
    files = [str(collection / f) if f.endswith((".tsv", ".txt", ".jsonl")) else f for f in files]
    return [
        *files,
        "--model",
        model_dir,
        "--output",
        str(output),
        "--top-k",
        "3",
        "--epochs",
        "3",
        "--lr",
        "1e-2",
        "--lora-rank",
        "4",
        "--max-passage-tokens",
        "16",
        "--quiet",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(collection, tiny_model_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("trained") / "profile"
    assert train.main(arguments(collection, tiny_model_dir, output)) == 0
    return output


def test_trained_profile_and_adapter_load_and_merge_exactly(trained, tiny_model_dir, tmp_path, tokenizer):
    output = trained
    profile = HeadProfile.load(output)
    assert len(profile.heads) == 3 and profile.adapter == str(output / "adapter.safetensors")
    assert HeadProfile.load(profile.save(tmp_path / "again" / "profile.json")) == profile
    assert profile.meta["selection"]["method"] == "entropy" and not (output / "checkpoint.pt").exists()
    state, spec = load_adapter(profile.adapter)
    assert spec.rank == 4 and spec.layers == tuple(range(profile.depth))
    assert any(v.abs().sum() > 0 for k, v in state.items() if "lora_B" in k)
    # what training did: selection by nDCG less 0.1 x entropy, then weights aligned from equal
    for quality in profile.meta["selected_heads"]:
        assert quality["score"] == pytest.approx(quality["ndcg"] - 0.1 * quality["entropy"], abs=2e-6)
    weights = [w for *_, w in profile.heads]
    assert sum(abs(w) for w in weights) == pytest.approx(1.0) and max(weights) - min(weights) > 1e-4
    assert profile.meta["train_queries"] == 2 and profile.meta["align"]["epochs"] == 3

    merged = HeadRanker.from_pretrained(tiny_model_dir, profile=str(output))
    base, _ = load_model(tiny_model_dir)
    unmerged, _ = load_model(tiny_model_dir)
    add_lora(unmerged, spec)
    load_lora_state(unmerged, state)
    without_adapter = HeadProfile(profile.model, profile.heads, profile.prompt)
    query, passages = QUERIES["1"], list(TEXTS.values())
    with torch.no_grad():
        got = merged.reader.head_scores(query, passages)
        expected = HeadRanker(unmerged, tokenizer, without_adapter).reader.head_scores(query, passages)
        untrained = HeadRanker(base, tokenizer, without_adapter).reader.head_scores(query, passages)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(got, untrained, atol=1e-6)  # the adapter changes the attention


def test_adapter_is_applied_once(trained, tiny_model_dir, tmp_path):
    output = trained
    model, _ = load_model(tiny_model_dir)
    weight = model.model.layers[0].self_attn.q_proj.weight
    apply_adapter(model, output / "adapter.safetensors")
    once = weight.clone()
    apply_adapter(model, output / "adapter.safetensors")
    assert torch.equal(weight, once)
    other = tmp_path / "other.safetensors"
    other.write_bytes((output / "adapter.safetensors").read_bytes())
    with pytest.raises(ValueError, match="already holds the merged adapter"):
        apply_adapter(model, other)


def test_selection_only_writes_no_adapter(collection, tiny_model_dir, tmp_path):
    output = tmp_path / "selected"
    assert (
        train.main(
            arguments(collection, tiny_model_dir, output, "--no-align", "--selection", "ndcg", "--max-depth", "2")
        )
        == 0
    )
    profile = HeadProfile.load(output)
    assert profile.depth <= 2 and profile.meta["selection"]["max_depth"] == 2
    assert profile.adapter is None and not (output / "adapter.safetensors").exists()
    assert [w for _, _, w in profile.heads] == [pytest.approx(1 / 3)] * 3
    assert profile.meta["align"] is None and len(profile.meta["selected_heads"]) == 3
    # what selection did: the 3 heads below layer 2 whose own rankings score the best nDCG@10, by
    # ir_measures on each head's calibrated scores (ties: shallower layer, then lower head)
    ranker = HeadRanker.from_pretrained(
        tiny_model_dir,
        profile=HeadProfile("tiny", tuple((l, h, 1.0) for l in range(2) for h in range(4)), profile.prompt),
        allow_profile_model_mismatch=True,
    )
    ndcg = {}
    for qid, query in QUERIES.items():
        with torch.no_grad():
            scores = ranker.reader.head_scores(query, list(TEXTS.values()))  # the run's order
        for row, head in enumerate((l, h) for l in range(2) for h in range(4)):
            run = {qid: dict(zip(TEXTS, scores[row].tolist()))}
            value = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], {qid: GRADES[qid]}, run)[ir_measures.nDCG @ 10]
            ndcg[head] = ndcg.get(head, 0.0) + value / len(QUERIES)
    best = sorted(ndcg, key=lambda head: (-round(ndcg[head], 9), head))[:3]
    assert sorted((l, h) for l, h, _ in profile.heads) == sorted(best)
    recorded = {(q["layer"], q["head"]): q["ndcg"] for q in profile.meta["selected_heads"]}
    assert recorded == {head: pytest.approx(ndcg[head], abs=1e-6) for head in best}
    assert profile.meta["train_queries"] == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--selection", "best"], None),
        (["--top-k", "99"], "--top-k must be between 1 and the 12 heads"),
        (["--lora-layers", "x-y"], "--lora-layers takes"),
    ],
)
def test_bad_flags_give_one_line_errors(collection, tiny_model_dir, tmp_path, capsys, extra, message):
    if message is None:
        with pytest.raises(SystemExit):
            train.main(arguments(collection, tiny_model_dir, tmp_path / "p", *extra))
        return
    assert train.main(arguments(collection, tiny_model_dir, tmp_path / "p", *extra)) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # transformers may draw a loading bar first
    assert last.startswith("error:") and message in last


def test_adapter_spec_checks():
    with pytest.raises(ValueError, match="rank must be positive"):
        AdapterSpec(0, 8.0, (0,))
