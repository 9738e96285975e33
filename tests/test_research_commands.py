"""``python -m headrank_ir.train loco|pseudo|ablation``: the research pipeline that made the shipped
profiles, run on toy sets of cached features (no model, no data). The reports and the profile must
match, byte for byte, what ``tools/loco.py``, ``tools/pseudo_queries.py`` and
``tools/train_eval.py`` wrote for the same toy sets before they moved into the package
(tests/fixtures/research/), except the command each names."""

from __future__ import annotations

import json
import random

import pytest
import torch
from pipeline_support import REPO

from headrank_ir.engine.profile import FusionSettings
from headrank_ir.records import Candidate, Query, Request
from headrank_ir.train import ablation, align_folds, ceiling, cli, features, grid, nested, pseudo, store
from headrank_ir.train.examples import HeadFeatures, LabelledSet, TrainingQuery

EXPECTED = REPO / "tests" / "fixtures" / "research"
SETS = ("dl19", "dl20", "cranfield")  # built-in names: selectivity reads their relevant grade


def toy_set(name: str, seed: int) -> LabelledSet:
    """Six queries of eight candidates, one relevant each and never BM25's first (grade 1 + seed:
    seed 1 leaves no adjacent-grade pair to train weights on); four heads of layer 0 (0-3 for
    seed 0, 4-7 for seed 1, ...) score the relevant passage 1 and the rest 0, the other 60 at random."""
    generator = torch.Generator().manual_seed(seed)
    heads = tuple((layer, head) for layer in range(8) for head in range(8))
    queries, requests, qrels, scores, entropy = [], {}, {}, {}, {}
    for number in range(6):
        qid, relevant = f"{name}{number}", 1 + number % 7
        docids = tuple(f"{qid}-d{i}" for i in range(8))
        grades = tuple((1 + seed) * int(i == relevant) for i in range(8))
        queries.append(TrainingQuery(qid, "q", docids, ("p",) * 8, grades))
        requests[qid] = Request(
            Query("q", qid), [Candidate(d, 10.0 - i, {"contents": "p"}) for i, d in enumerate(docids)]
        )
        qrels[qid] = dict(zip(docids, grades))
        scores[qid] = torch.rand(64, 8, generator=generator)
        scores[qid][4 * seed : 4 * seed + 4] = torch.tensor(grades, dtype=torch.float32) / (1 + seed)
        entropy[qid] = torch.rand(64, generator=generator)
    return LabelledSet(name, queries, requests, qrels, HeadFeatures(heads, scores, entropy))


@pytest.fixture
def toy_sets(monkeypatch, tmp_path):
    """The toy sets in place of the cached features, and the reports written under ``tmp_path``."""
    sets = {name: toy_set(name, seed) for seed, name in enumerate(SETS)}
    for module in (nested, ceiling):
        monkeypatch.setattr(module, "read_set", lambda args, name, heads: sets[name])
        monkeypatch.setattr(module, "all_heads", lambda args, names: sets["dl19"].features.heads)
    monkeypatch.setattr(store, "ROOT", tmp_path)
    return sets


def same_report(stem: str, old: str = "", new: str = "") -> None:
    """The Markdown byte for byte (``old`` read as ``new``: the command it names), the JSON but for
    its timing."""
    written, expected = store.ROOT / "runs", EXPECTED
    markdown = (written / f"{stem}.md").read_text()
    assert markdown == (expected / f"{stem}.md").read_text().replace(old, new)
    result, reference = (json.loads((folder / f"{stem}.json").read_text()) for folder in (written, expected))
    result.pop("seconds", None), reference.pop("seconds", None)
    assert json.dumps(result) == json.dumps(reference)  # as text: the toy sets' NaN gaps are != themselves


def toy_command(*argv: str) -> list[str]:
    return [*argv, "--model", "toy", "--depth", "8", "--datasets", *SETS]


def test_loco_ceiling_writes_the_old_tools_report(toy_sets):
    assert cli.main(toy_command("loco", "ceiling", "--trained-weights")) == 0
    same_report("loco_ceiling.toy")


def test_loco_evaluate_writes_the_old_tools_report_and_ships_its_profile(toy_sets):
    assert cli.main(toy_command("loco", "evaluate", "--ship")) == 0
    same_report("loco.toy")
    shipped = store.ROOT / "headrank_ir" / "profiles" / "toy.json"
    expected = (EXPECTED / "profile.toy.json").read_text()
    old, new = "tools/loco.py evaluate", "python -m headrank_ir.train loco evaluate"
    assert old in expected and shipped.read_text() == expected.replace(old, new)


def test_pseudo_evaluate_writes_the_old_tools_report(toy_sets, monkeypatch):
    """Pseudo-query lists: a second draw of the toy sets, with no requests (never reranked)."""
    lists = {f"ict-{n}": toy_set(f"ict-{n}", (seed + 1) % 3) for seed, n in enumerate(SETS)}
    lists = {name: LabelledSet(name, s.queries, {}, {}, s.features) for name, s in lists.items()}
    recipe = {"selection": "entropy", "top_k": 4, "entropy_weight": 0.1}
    chosen = (recipe, FusionSettings("interpolate", 0.5), {**toy_sets, **lists})
    monkeypatch.setattr(pseudo, "shipped_selection", lambda args: chosen)
    assert cli.main(toy_command("pseudo", "evaluate")) == 0
    same_report("pseudo.toy", old="(tools/pseudo_queries.py; ", new="(`python -m headrank_ir.train pseudo build`; ")


def test_the_ablation_table_and_its_settings_are_the_old_tools():
    records = json.loads((EXPECTED / "train_eval.records.json").read_text())
    args = cli.build_parser().parse_args(["ablation", "--model", "toy"])
    assert ablation.markdown(records, args) == (EXPECTED / "train_eval.md").read_text()
    # runs/train_eval.json records the settings: the old tool's flags, in its order, not the dispatch
    settings = [k for k in vars(args) if k not in ablation.DISPATCH]
    assert settings == [
        *("model", "data", "splits", "depth", "max_passage_tokens", "seed", "top_k", "max_depth", "entropy_weight"),
        *("epochs", "lr", "head_lr", "temperature", "lora_rank", "lora_alpha", "lora_layers", "max_pairs"),
        *("hard_margin", "checkpoint_every", "kl_weight", "spread_weight", "profiles", "output", "systems", "tag"),
        *("reuse", "selection", "no_align", "no_regularizer"),
    ]


def test_the_ceiling_chooses_the_grid_on_each_sets_own_judgements(toy_sets):
    """On each set the grid's best entry is that set's four perfect heads (not another set's),
    found by in-sample nDCG and scored against the set's BM25; reported unfused and fused, and
    with weights trained on the set where it has adjacent-grade pairs."""
    assert cli.main(toy_command("loco", "ceiling", "--trained-weights")) == 0
    result = json.loads((store.ROOT / "runs" / "loco_ceiling.toy.json").read_text())
    markdown = (store.ROOT / "runs" / "loco_ceiling.toy.md").read_text()
    for record in result["sets"]:
        bm25 = grid.mean(grid.bm25(toy_sets[record["set"]]))
        assert record["bm25"] == bm25 < 1.0  # the relevant passage is never BM25's first
        assert record["unfused"] == {"entry": "ndcg top-4, none", "ndcg": 1.0, "delta": 1.0 - bm25}
        assert record["fused"]["ndcg"] == 1.0 and record["fused"]["entry"] == "ndcg top-4, none"  # ties: grid order
    trained = {record["set"]: record["trained_weights"] for record in result["sets"]}
    assert trained["dl20"] is None and trained["dl19"]["ndcg"] == 1.0 and " ep, lr " in trained["dl19"]["entry"]
    assert markdown.count("| ndcg top-4, none |") == 6 and markdown.count("| – | – |") == 2


def test_a_depth_cap_below_the_recipes_head_count_keeps_every_head_it_allows():
    """The depth curve caps the shipped recipe's heads at 4-24 layers: a top-64 recipe over 4
    layers of 8 heads has 32 to choose from, and takes them all instead of failing."""
    selector = grid.Selector({"a": toy_set("a", 0)})
    heads = selector.heads(["a"], {"selection": "ndcg", "top_k": 64, "entropy_weight": 0.0, "max_depth": 4})
    assert sorted(h[:2] for h in heads) == [(layer, head) for layer in range(4) for head in range(8)]
    assert len(selector.heads(["a"], {"selection": "ndcg", "top_k": 16, "entropy_weight": 0.0, "max_depth": 4})) == 16


def research_args(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def test_pseudo_alignment_caches_its_adapters_apart_from_the_judged_ones():
    """Both commands cache a fold's aligned profile by name and reuse one that exists: with the same
    settings, a pseudo-query adapter found under the judged one's name would be reported as label-free."""
    args = research_args("pseudo", "align", "--align-queries", "50", "--align-setting", "lora_rank=2")
    judged, label_free = align_folds.align_folder(args, "dl19"), align_folds.align_folder(args, "dl19", "pseudo_align")
    assert judged.parent == label_free.parent and judged != label_free
    assert judged.name == "smollm2-135m.q50.lora_rank2.without-dl19.top20"  # the committed runs' cache names
    assert align_folds.align_name(args, "pseudo_align") == "pseudo_align.smollm2-135m.q50.lora_rank2"


def test_reports_of_another_passage_length_get_their_own_names():
    """A pass at 128-token passages must not overwrite the committed 64-token reports (nor read
    the 64-token shipped recipe as its own), while the 64-token names stay as committed."""
    default = research_args("loco", "evaluate")
    longer = research_args("loco", "evaluate", "--passage-tokens", "128")
    assert store.report_name(default, "loco") == "loco.smollm2-135m"
    assert store.report_name(longer, "loco") == "loco.smollm2-135m.tok128"
    assert store.report_name(longer, "loco_weights") == "loco_weights.smollm2-135m.tok128"
    assert align_folds.align_name(longer) == "loco_align.smollm2-135m.tok128.q40"
    assert align_folds.align_folder(longer, "dl19").name == "smollm2-135m.tok128.q40.without-dl19.top20"
    assert store.report_name(research_args("pseudo", "align", "--passage-tokens", "128"), "pseudo") == (
        "pseudo.smollm2-135m.tok128"
    )


def test_bad_research_flags_and_missing_features_give_one_line_errors(capsys):
    with pytest.raises(ValueError, match="--align-setting: 'dropout' is not one of"):
        align_folds.align_settings(research_args("loco", "align", "--align-setting", "dropout=0.1"))
    with pytest.raises(ValueError, match="--max-queries takes SET=N"):
        features.query_caps(research_args("loco", "evaluate", "--max-queries", "cranfield"))
    assert cli.main(["loco", "evaluate", "--model", "no-such-model", "--datasets", "dl19"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: no features cached for dl19: run `python -m headrank_ir.train loco features`")
    assert error.count("\n") == 1


def test_inverse_cloze_cuts_a_sentence_or_a_window_out_of_the_passage():
    sentences = ["The first sentence has eight words in it.", "A second one is also eight words long.", "Tiny."]
    passage = " ".join([*sentences, "Also too short."])  # only the first two are long enough to be queries
    for seed in range(4):
        span, rest = pseudo.cloze(passage, random.Random(seed))
        assert span in {s.rstrip(".") for s in sentences[:2]} and span not in rest
        assert sorted((span + " " + rest).replace(".", "").split()) == sorted(passage.replace(".", "").split())
    words = [f"w{i}" for i in range(30)]  # no punctuation: a window of SPAN_WORDS words
    span, rest = pseudo.cloze(" ".join(words), random.Random(1))
    assert len(span.split()) == pseudo.SPAN_WORDS and " ".join(words).replace(span, " ").split() == rest.split()
    assert pseudo.cloze("too short to lose a sentence", random.Random(0)) is None


def test_pseudo_lists_grade_the_source_and_the_bi_encoders_closest_others():
    class Closeness:  # the bi-encoder's cosine: the passage's number, so "p5" is the closest
        def scores(self, query, passages):
            return [float(p.removeprefix("p")) if p.startswith("p") else -1.0 for p in passages]

    docs = [Candidate(f"d{i}", 10.0 - i, {"contents": f"p{i}"}) for i in range(6)]
    spans = {"q": ("d2", "the span", "the source without it"), "lost": ("d9", "gone", "rest")}
    requests = [Request(Query("the span", "q"), docs), Request(Query("gone", "lost"), docs)]
    [listed] = pseudo.graded(spans, requests, Closeness(), seed=0)  # "lost": its source is not among the candidates
    assert listed.qid == "q" and listed.text == "the span" and sorted(listed.docids) == [c.docid for c in docs]
    assert listed.docids != tuple(c.docid for c in docs)  # shown in a random order, not BM25's
    shown = dict(zip(listed.docids, listed.passages))
    assert shown["d2"] == "the source without it" and shown["d0"] == "p0"
    grades = dict(zip(listed.docids, listed.grades))
    assert grades == {"d0": 0, "d1": 0, "d2": 2, "d3": 1, "d4": 1, "d5": 1}  # d5, d4, d3 closest of the others


def test_fit_is_the_default_so_the_old_invocation_still_trains(monkeypatch):
    """``python -m headrank_ir.train --run … --output …`` (before the subcommands) runs ``fit``."""
    flags = ["--topics", "t.tsv", "--qrels", "q.txt", "--run", "r.txt", "--corpus", "c.jsonl", "--output", "out"]
    seen = []
    monkeypatch.setattr(cli, "fit", lambda args: seen.append(vars(args)) or 0)
    assert cli.main(flags) == 0 and cli.main(["fit", *flags]) == 0
    assert seen[0] == seen[1] and seen[0]["command"] == "fit" and seen[0]["output"] == "out"


@pytest.mark.parametrize("command", [[], ["fit"], ["loco"], ["pseudo"], ["ablation"]])
def test_every_level_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([*command, "--help"])
    shown = capsys.readouterr().out
    assert stop.value.code == 0 and shown.startswith(f"usage: python -m headrank_ir.train {' '.join(command)}".rstrip())
    stages = {"loco": cli.LOCO_STAGES, "pseudo": cli.PSEUDO_STAGES}.get(command[0] if command else "", {})
    assert all(f"  {stage} " in shown for stage in stages)
