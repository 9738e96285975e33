"""The benchmark tools still run against the package they measure (tiny model, a few queries):
a refactor of the command's loop once broke ``bench_throughput`` without any test noticing."""

from __future__ import annotations

import json
import subprocess
import sys

from pipeline_support import REPO


def test_bench_throughput_runs_the_commands_loop(tmp_path, tiny_model_dir):
    output = tmp_path / "rows.json"
    argv = [sys.executable, str(REPO / "tools" / "bench_throughput.py"), "--model", tiny_model_dir]
    argv += ["--passages", "3", "--profiles", "2:2", "--batch-sizes", "1", "2", "--max-queries", "2"]
    argv += ["--repeats", "1", "--batches", "2", "--no-warmup", "--baseline-queries", "0", "--output", str(output)]
    subprocess.run(argv + ["--passage-tokens", "8", "16"], cwd=REPO, check=True, capture_output=True, timeout=300)
    rows = json.loads(output.read_text())
    assert [(row["passage_tokens"], row["batch_size"]) for row in rows] == [(8, 1), (8, 2), (16, 1), (16, 2)]
    assert [row["queries"] for row in rows] == [2, 4, 2, 4]  # at least --batches batches: queries cycled
    assert all(row["engine_s_per_query"] > 0 and row["floor_s_per_query"] > 0 for row in rows)
    # the engine's promise, counted on the CPU: no host read inside a group, one download per batch
    assert all(row["syncs_per_group"] == 0 and row["groups_counted"] >= 1 for row in rows)
    assert [row["downloads_counted"] for row in rows] == [2, 2, 2, 2]  # batches of the first repeat
    assert all(0 <= row["hidden_share"] <= 1 and row["plan_s"] > 0 and row["forward_s"] > 0 for row in rows)


def pseudo_queries():
    sys.path.insert(0, str(REPO / "tools"))
    import pseudo_queries

    return pseudo_queries


def test_inverse_cloze_cuts_a_sentence_or_a_window_out_of_the_passage():
    import random

    tool = pseudo_queries()
    sentences = ["The first sentence has eight words in it.", "A second one is also eight words long.", "Tiny."]
    passage = " ".join([*sentences, "Also too short."])  # only the first two are long enough to be queries
    for seed in range(4):
        span, rest = tool.cloze(passage, random.Random(seed))
        assert span in {s.rstrip(".") for s in sentences[:2]} and span not in rest
        assert sorted((span + " " + rest).replace(".", "").split()) == sorted(passage.replace(".", "").split())
    words = [f"w{i}" for i in range(30)]  # no punctuation: a window of SPAN_WORDS words
    span, rest = tool.cloze(" ".join(words), random.Random(1))
    assert len(span.split()) == tool.SPAN_WORDS and " ".join(words).replace(span, " ").split() == rest.split()
    assert tool.cloze("too short to lose a sentence", random.Random(0)) is None


def test_pseudo_lists_grade_the_source_and_the_bi_encoders_closest_others():
    from headrank_ir.records import Candidate, Query, Request

    tool = pseudo_queries()

    class Closeness:  # the bi-encoder's cosine: the passage's number, so "p5" is the closest
        def scores(self, query, passages):
            return [float(p.removeprefix("p")) if p.startswith("p") else -1.0 for p in passages]

    docs = [Candidate(f"d{i}", 10.0 - i, {"contents": f"p{i}"}) for i in range(6)]
    spans = {"q": ("d2", "the span", "the source without it"), "lost": ("d9", "gone", "rest")}
    requests = [Request(Query("the span", "q"), docs), Request(Query("gone", "lost"), docs)]
    [listed] = tool.graded(spans, requests, Closeness(), seed=0)  # "lost": its source is not among the candidates
    assert listed.qid == "q" and listed.text == "the span" and sorted(listed.docids) == [c.docid for c in docs]
    assert listed.docids != tuple(c.docid for c in docs)  # shown in a random order, not BM25's
    shown = dict(zip(listed.docids, listed.passages))
    assert shown["d2"] == "the source without it" and shown["d0"] == "p0"
    grades = dict(zip(listed.docids, listed.grades))
    assert grades == {"d0": 0, "d1": 0, "d2": 2, "d3": 1, "d4": 1, "d5": 1}  # d5, d4, d3 closest of the others


def test_pseudo_alignment_caches_its_adapters_apart_from_the_judged_ones():
    """Both tools cache a fold's aligned profile by name and reuse one that exists: with the same
    settings, a pseudo-query adapter found under the judged one's name would be reported as label-free."""
    tool = pseudo_queries()
    import loco

    args = tool.build_parser().parse_args(["align", "--align-queries", "50", "--align-setting", "lora_rank=2"])
    judged, pseudo = loco.align_folder(args, "dl19"), loco.align_folder(args, "dl19", "pseudo_align")
    assert judged.parent == pseudo.parent and judged != pseudo
    assert judged.name == "smollm2-135m.q50.lora_rank2.without-dl19.top20"  # the committed runs' cache names
    assert loco.align_name(args, "pseudo_align") == "pseudo_align.smollm2-135m.q50.lora_rank2"


def test_reports_of_another_passage_length_get_their_own_names():
    """A pass at 128-token passages must not overwrite the committed 64-token reports (nor read
    the 64-token shipped recipe as its own), while the 64-token names stay as committed."""
    tool = pseudo_queries()
    import loco

    default = loco.build_parser().parse_args(["evaluate"])
    longer = loco.build_parser().parse_args(["evaluate", "--passage-tokens", "128"])
    assert loco.report_name(default, "loco") == "loco.smollm2-135m"
    assert loco.report_name(longer, "loco") == "loco.smollm2-135m.tok128"
    assert loco.report_name(longer, "loco_weights") == "loco_weights.smollm2-135m.tok128"
    assert loco.align_name(longer) == "loco_align.smollm2-135m.tok128.q40"
    assert loco.align_folder(longer, "dl19").name == "smollm2-135m.tok128.q40.without-dl19.top20"
    pseudo = tool.build_parser().parse_args(["align", "--passage-tokens", "128"])
    assert loco.report_name(pseudo, "pseudo") == "pseudo.smollm2-135m.tok128"


def toy_collection(loco, name: str, seed: int):
    """Six queries of eight candidates, one relevant each and never BM25's first (grade 1, or 2 for
    seed 1: no adjacent-grade pair to train weights on); four heads of layer 0 (0-3 for seed 0,
    4-7 for seed 1) score the relevant passage 1 and the rest 0, the other 60 at random."""
    import torch

    from headrank_ir.records import Candidate, Query, Request
    from headrank_ir.train.examples import HeadFeatures, TrainingQuery

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
    return loco.Collection(name, queries, requests, qrels, HeadFeatures(heads, scores, entropy))


def test_the_ceiling_chooses_the_grid_on_each_sets_own_judgements(monkeypatch):
    """On each set the grid's best entry is that set's four perfect heads (not the other set's),
    found by in-sample nDCG and scored against the set's BM25; reported unfused and fused, and
    with weights trained on the set where it has adjacent-grade pairs."""
    pseudo_queries()  # puts tools/ on the path
    import loco

    sets = {name: toy_collection(loco, name, seed) for seed, name in enumerate(("a", "b"))}
    written = {}
    monkeypatch.setattr(loco, "read_collection", lambda args, name, heads: sets[name])
    monkeypatch.setattr(loco, "all_heads", lambda args, names: sets["a"].features.heads)
    monkeypatch.setattr(loco, "output", lambda stem, result, markdown: written.update({stem: (result, markdown)}))
    args = loco.build_parser().parse_args(["ceiling", "--depth", "8", "--trained-weights"])
    args.datasets = ["a", "b"]
    loco.ceiling(args)
    result, markdown = written["loco_ceiling.smollm2-135m"]
    for record in result["sets"]:
        bm25 = loco.mean(loco.bm25(sets[record["set"]]))
        assert record["bm25"] == bm25 < 1.0  # the relevant passage is never BM25's first
        assert record["unfused"] == {"entry": "ndcg top-4, none", "ndcg": 1.0, "delta": 1.0 - bm25}
        assert record["fused"]["ndcg"] == 1.0 and record["fused"]["entry"] == "ndcg top-4, none"  # ties: grid order
    trained = {record["set"]: record["trained_weights"] for record in result["sets"]}
    assert trained["b"] is None and trained["a"]["ndcg"] == 1.0 and " ep, lr " in trained["a"]["entry"]
    assert markdown.count("| ndcg top-4, none |") == 4 and markdown.count("| – | – |") == 1


def test_a_depth_cap_below_the_recipes_head_count_keeps_every_head_it_allows():
    """The depth curve caps the shipped recipe's heads at 4-24 layers: a top-64 recipe over 4
    layers of 8 heads has 32 to choose from, and takes them all instead of failing."""
    pseudo_queries()  # puts tools/ on the path
    import loco

    selector = loco.Selector({"a": toy_collection(loco, "a", 0)})
    heads = selector.heads(["a"], {"selection": "ndcg", "top_k": 64, "entropy_weight": 0.0, "max_depth": 4})
    assert sorted(h[:2] for h in heads) == [(layer, head) for layer in range(4) for head in range(8)]
    assert len(selector.heads(["a"], {"selection": "ndcg", "top_k": 16, "entropy_weight": 0.0, "max_depth": 4})) == 16
