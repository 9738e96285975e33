"""The research commands' reports: each result dict as the Markdown written beside its JSON."""

from __future__ import annotations

from collections.abc import Sequence

from headrank_ir.engine.profile import FusionSettings
from headrank_ir.train.grid import CEILING_WEIGHTS_RECIPE, FUSIONS, RECIPES, TOP_K, fusion_label, mean, recipe_label

ALIGN_SYSTEMS = ("recipe", "recipe + fusion", "aligned", "aligned + fusion")
WEIGHT_SYSTEMS = ("recipe + fusion", "aligned weights", "aligned weights + fusion")


def table_head(columns: Sequence[str]) -> list[str]:
    """A Markdown table's header and rule."""
    return ["| " + " | ".join(columns) + " |", "| --- " * len(columns) + "|"]


def report_head(title: str, paragraph: str, columns: Sequence[str]) -> list[str]:
    """A result's Markdown title, what it measured, and its table's header."""
    return [f"# {title}", "", paragraph, "", *table_head(columns)]


def measured(row: dict) -> str:
    """A system's cell: nDCG@10 (Δ against BM25, p)."""
    return f"{row['ndcg']:.4f} ({row['delta']:+.4f}, p {row['p']:.3f})"


def fold_means(folds: Sequence[dict], names: Sequence[str]) -> str:
    """The line of each system's mean nDCG@10 over the held-out sets."""
    means = {n: mean({f["held_out"]: f["systems"][n]["ndcg"] for f in folds}) for n in names}
    return "Mean over the held-out sets: " + ", ".join(f"{n} {v:.4f}" for n, v in means.items()) + "."


def capped_sets(result: dict) -> str:
    caps = result.get("max_queries") or {}
    if not caps:
        return "every such query"
    return "every such query, except " + ", ".join(f"{name}: the first {count}" for name, count in caps.items())


def loco_report(result: dict) -> str:
    systems = list(result["held_out"][0]["systems"])  # bm25 first; the old profiles where the model has them
    lines = report_head(
        f"Leave-one-collection-out, {result['model']}",
        (
            f"BM25 top {result['depth']} reranked (rest in BM25 order), passages cut to {result['passage_tokens']} "
            f"tokens, heads from the first {result['max_depth']} layers. For each held-out set the recipe (head "
            "selection) and the fusion with BM25 are chosen by leave-one-out among the other three sets and trained "
            "on all three; the held-out set is never seen. nDCG@10 over the held-out set's evaluated queries "
            f"(those with a relevant passage in the BM25 top {result['depth']}; {capped_sets(result)}). "
            "Δ and p (paired randomisation, 10,000 resamples): against BM25 on the same queries. "
            "The old profiles (where the bench has them for the model) are its DL20-selected ones (in-sample on DL20)."
        ),
        ["held out", "queries", "chosen recipe", "chosen fusion", *systems],
    )
    for record in result["held_out"]:
        cells = [record["held_out"], str(record["queries"]), recipe_label(record["recipe"])]
        cells.append(fusion_label(FusionSettings(**record["fusion"])))
        for name in systems:
            row = record["systems"][name]
            cells.append(f"{row['ndcg']:.4f}" if name == "bm25" else measured(row))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Selectivity gap (middle zone, relevant share minus irrelevant share in the top quartile):", ""]
    lines += table_head(["held out", *systems[1:]])
    for record in result["held_out"]:
        gaps = [f"{record['systems'][n]['gap']:+.3f}" for n in systems[1:]]
        lines.append(f"| {record['held_out']} | " + " | ".join(gaps) + " |")
    return "\n".join([*lines, *shipped_lines(result)])


def shipped_lines(result: dict) -> list[str]:
    """The leave-one-out report's last part: the shipped recipe overall, set by set, and by depth."""
    shipped = result["shipped"]
    return [
        "",
        f"Shipped profile (all four sets): {recipe_label(shipped['recipe'])}, fusion "
        f"{fusion_label(FusionSettings(**shipped['fusion']))}; its leave-one-out mean nDCG@10 over the four sets "
        f"{shipped['loco_ndcg']:.4f}, the best unfused recipe ({shipped['best_unfused']['recipe']}) "
        f"{shipped['best_unfused']['loco_ndcg']:.4f}.",
        "",
        "The shipped recipe set by set (the same recipe and fusion throughout, not chosen per fold): trained on "
        "the other three (leave-one-out, fused and not) and trained on all four (in-sample):",
        "",
        "| set | bm25 | leave-one-out, fused | leave-one-out, unfused | in-sample, fused |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {name} | {row['bm25']:.4f} | {row['loco']:.4f} ({row['loco'] - row['bm25']:+.4f}) | "
            f"{row['loco_unfused']:.4f} ({row['loco_unfused'] - row['bm25']:+.4f}) | "
            f"{row['in_sample']:.4f} ({row['in_sample'] - row['bm25']:+.4f}) |"
            for name, row in shipped["per_set"].items()
        ],
        "",
        "Depth: the shipped recipe with its heads kept to the first L layers (a forward runs L layers), "
        "leave-one-out nDCG@10, fused / unfused:",
        "",
        *table_head(["layers", *shipped["per_set"], "mean"]),
        *[
            f"| {layers} | "
            + " | ".join(f"{row['fused'][n]:.4f} / {row['unfused'][n]:.4f}" for n in shipped["per_set"])
            + f" | {mean(row['fused']):.4f} / {mean(row['unfused']):.4f} |"
            for layers, row in result["depth_curve"].items()
        ],
        "",
        f"Grid: recipes {', '.join(result['recipes'])}; fusions {', '.join(result['fusions'])}.",
        "",
    ]


def align_label(settings: dict) -> str:
    return (
        f"{settings['epochs']} epoch(s), lr {settings['lr']}, head lr {settings['head_lr']}, "
        f"tau {settings['temperature']}, LoRA rank {settings['lora_rank']} alpha {settings['lora_alpha']}, "
        f"{settings['max_pairs']} pairs per query"
    )


def loco_align_report(result: dict) -> str:
    return align_report(
        result,
        f"Alignment by leave-one-collection-out, {result['model']}",
        (
            "Per held-out set: the recipe and fusion chosen on the other three (as in runs/loco.<model>.md); "
            f"its heads' weights and a q/k LoRA aligned ({align_label(result['align'])}, regulariser on) on the first "
            f"{result['align_queries']} evaluated queries of each of the other three (those with two candidates one "
            "grade apart: the others have no pair, so Vaswani, judged relevant-only, adds none); the held-out "
            f"set reranked by a forward with the adapter merged (BM25 top {result['depth']}). nDCG@10, Δ and p "
            "(paired randomisation) against BM25; the last column: aligned + fusion against the same heads "
            "unaligned + fusion."
        ),
    )


def align_report(result: dict, title: str, paragraph: str) -> str:
    """The folds of an alignment result as a table, under ``title`` and ``paragraph``."""
    columns = ["held out", "queries", "aligned on", "align s", "bm25", *ALIGN_SYSTEMS, "aligned vs not"]
    lines = report_head(title, paragraph, columns)
    for fold in result["folds"]:
        rows = fold["systems"]
        cells = [fold["held_out"], str(fold["queries"]), f"{fold['aligned_queries']} of {fold['train_queries']}"]
        cells.append(f"{fold['align_seconds']:.0f}")
        cells.append(f"{rows['bm25']['ndcg']:.4f}")
        cells += [measured(rows[n]) for n in ALIGN_SYSTEMS]
        versus = rows["aligned + fusion"]["vs_unaligned"]
        cells.append(f"{versus['delta']:+.4f} (p {versus['p']:.3f})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", fold_means(result["folds"], ("bm25", *ALIGN_SYSTEMS)), ""]
    return "\n".join(lines)


def weights_report(result: dict) -> str:
    lines = report_head(
        f"Head weights aligned from cached features, {result['model']}",
        (
            "Per held-out set: recipe and fusion chosen on the other three (as in runs/loco.<model>.md); the selected "
            "heads' weights trained on the alignment objective (pairs, reference KL, middle spread; the model frozen, "
            "so no LoRA: `train.alignment.align_weights`), the setting (epochs × head lr × tau, or equal weights) "
            "chosen by leave-one-out among the other three, trained on all three, tested on the held-out set "
            f"(BM25 top {result['depth']}). nDCG@10, Δ and p (paired randomisation) against BM25; the last column: "
            "aligned weights + fusion against the equal weights + fusion."
        ),
        ["held out", "queries", "chosen setting", "bm25", *WEIGHT_SYSTEMS, "aligned vs equal"],
    )
    for fold in result["folds"]:
        rows = fold["systems"]
        cells = [fold["held_out"], str(fold["queries"]), fold["chosen"], f"{rows['bm25']['ndcg']:.4f}"]
        cells += [measured(rows[n]) for n in WEIGHT_SYSTEMS]
        versus = rows["aligned weights + fusion"]["vs_equal"]
        lines.append("| " + " | ".join(cells) + f" | {versus['delta']:+.4f} (p {versus['p']:.3f}) |")
    held = [f["held_out"] for f in result["folds"]]
    lines += [
        "",
        "Every setting, not nested (each fold's own recipe and fusion, weights trained on the other three), fused:",
        "",
        *table_head(["weights", *held, "mean"]),
        *[
            f"| {label} | " + " | ".join(f"{by_set[h]:.4f}" for h in held) + f" | {mean(by_set):.4f} |"
            for label, by_set in result["sweep"].items()
        ],
        "",
    ]
    return "\n".join(lines)


def ceiling_report(result: dict) -> str:
    top = f"top {TOP_K[0]}-{TOP_K[-1]}"
    paragraph = (
        f"BM25 top {result['depth']} reranked, passages cut to {result['passage_tokens']} tokens, heads from the "
        f"first {result['max_depth']} layers, {capped_sets(result)} with a relevant passage in the top "
        f"{result['depth']}. For each set, every recipe of the leave-one-out grid (all heads; {top} by nDCG; "
        f"{top} entropy-regularised) selects its heads on that set's own judged queries and every fusion "
        "is scored on the same queries: the best entry is what head selection and fusion can reach with this "
        "model's heads when they may look at the test judgements, which the nested figures never do. nDCG@10 "
        f"and Δ against BM25; no p-value: the best of {len(RECIPES) * len(FUSIONS)} entries scored on the queries "
        "that chose it is biased upwards by construction."
    )
    columns = ["set", "queries", "bm25", "best unfused", "entry", "best fused", "entry"]
    kinds = ["unfused", "fused"]
    if result.get("trained_weights"):
        paragraph += (
            f" Trained weights: the set's {CEILING_WEIGHTS_RECIPE['top_k']} best heads by nDCG, their weights trained "
            "on the alignment objective from cached features (as the `weights` stage does, the model frozen) on the "
            "set's own judged queries, "
            "each epochs × head lr × tau setting of that stage's grid with every fusion: what fitting the weights "
            "to the test judgements reaches (–: no query has two candidates one grade apart to train on)."
        )
        columns += ["trained weights, fused", "entry"]
        kinds.append("trained_weights")
    lines = report_head(f"The grid's ceiling, chosen on the test set itself, {result['model']}", paragraph, columns)
    for record in result["sets"]:
        cells = [record["set"], str(record["queries"]), f"{record['bm25']:.4f}"]
        for kind in kinds:
            best = record[kind]
            cells += [f"{best['ndcg']:.4f} ({best['delta']:+.4f})", best["entry"]] if best else ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def pseudo_report(result: dict) -> str:
    systems = [s for s in result["folds"][0]["systems"] if s != "bm25"]
    lists = ", ".join(f"{name} {count}" for name, count in result["lists"].items())
    lines = report_head(
        f"Label-free head selection: inverse-cloze pseudo-queries, {result['model']}",
        (
            "Pseudo-query lists (`python -m headrank_ir.train pseudo build`; "
            f"{result['per_corpus']} spans drawn per corpus, kept where "
            f"the source passage is in the span's BM25 top {result['depth']}): {lists}. Recipe and fusion fixed to "
            f"the shipped ones ({recipe_label(result['recipe'])}, {fusion_label(FusionSettings(**result['fusion']))}); "
            "only the training data of head selection changes. nDCG@10 on the held-out set's judged queries, "
            "Δ and p (paired randomisation) against BM25; the last columns: fused, against the judged selection fused."
        ),
        ["held out", "queries", "bm25", *systems],
    )
    for fold in result["folds"]:
        rows = fold["systems"]
        cells = [fold["held_out"], str(fold["queries"]), f"{rows['bm25']['ndcg']:.4f}"]
        cells += [measured(rows[n]) for n in systems]
        lines.append("| " + " | ".join(cells) + " |")
    fused = [s for s in systems if s.endswith(" + fusion") and s != "judged + fusion"]
    lines += ["", "Fused, against the heads selected on judged queries:", "", *table_head(["held out", *fused])]
    for fold in result["folds"]:
        versus = [fold["systems"][n]["vs_judged"] for n in fused]
        lines.append(
            f"| {fold['held_out']} | " + " | ".join(f"{v['delta']:+.4f} (p {v['p']:.3f})" for v in versus) + " |"
        )
    lines += ["", fold_means(result["folds"], ("bm25", *systems)), ""]
    return "\n".join(lines)


def align_pseudo_report(result: dict) -> str:
    fold = result["folds"][0]
    return align_report(
        result,
        f"Alignment on label-free pairs: inverse-cloze pseudo-queries, {result['model']}",
        (
            f"Per held-out set: the shipped recipe's heads ({recipe_label(fold['recipe'])}, selected on the other "
            f"three sets' judged queries: the `judged` system of runs/pseudo.{result['model']}.md) and its fusion "
            f"({fusion_label(FusionSettings(**fold['fusion']))}); their weights and a q/k LoRA aligned "
            f"({align_label(result['align'])}, regulariser on) on the first {result['align_queries']} pseudo-query "
            f"lists (of {result['per_corpus']} spans drawn) of each of the other three corpora: no judged query, the "
            "pairs graded by construction (the source passage 2, the MiniLM bi-encoder's closest three 1, the rest 0). "
            f"The held-out set's judged queries reranked by a forward with the adapter merged (BM25 top "
            f"{result['depth']}). Columns as in runs/loco_align.*.md: `recipe` is the heads unaligned; nDCG@10, Δ and "
            "p (paired randomisation) against BM25; the last column: aligned + fusion against unaligned + fusion."
        ),
    )
