import math

from headrank_ir.engine.profile import PromptSettings
from headrank_ir.evaluation.selectivity import middle_zone, relevance_kind, selectivity

FIRST = [f"d{i}" for i in range(8)]  # first-stage order


def test_middle_zone_is_the_middle_half_of_what_the_prompt_shows():
    assert middle_zone(FIRST, PromptSettings(passage_order="forward")) == {"d2", "d3", "d4", "d5"}
    # reversed, the prompt shows d7..d0: its middle half is the same first-stage ranks
    assert middle_zone(FIRST, PromptSettings(passage_order="reverse")) == {"d5", "d4", "d3", "d2"}
    assert middle_zone(FIRST[:3], PromptSettings(passage_order="forward")) == {"d1"}


def test_shares_count_middle_passages_reaching_the_top_quartile():
    qrels = {"q": {"d2": 3, "d3": 2, "d4": 0, "d5": 0, "d0": 3, "d6": 1}}
    reranked = {"q": ["d3", "d4", "d0", "d2", "d1", "d5", "d6", "d7"]}  # top quartile: d3, d4
    result = selectivity({"q": FIRST}, reranked, qrels, PromptSettings(passage_order="forward"))
    assert (result.relevant, result.irrelevant) == (0.5, 0.5)  # d3 of {d2, d3}; d4 of {d4, d5}
    assert (result.relevant_count, result.irrelevant_count) == (2, 2) and result.gap == 0.0
    binary = selectivity(
        {"q": FIRST},
        {"q": ["d2", "d3", *FIRST[4:], "d0", "d1"]},
        qrels,
        PromptSettings(passage_order="forward"),
        relevant_grade=1,
    )
    assert (binary.relevant, binary.irrelevant, binary.gap) == (1.0, 0.0, 1.0)


def test_unjudged_passages_are_the_irrelevant_ones_only_where_the_qrels_list_relevant_ones_only():
    qrels = {"q": {"d2": 1, "d0": 1}}  # Vaswani-like: relevant passages only
    reranked = {"q": ["d2", "d4", "d0", "d1", "d3", "d5", "d6", "d7"]}  # top quartile: d2, d4
    forward = PromptSettings(passage_order="forward")
    graded = selectivity({"q": FIRST}, reranked, qrels, forward, relevant_grade=1)
    assert graded.irrelevant_count == 0 and math.isnan(graded.irrelevant) and math.isnan(graded.gap)
    binary = selectivity({"q": FIRST}, reranked, qrels, forward, relevant_grade=1, unjudged_irrelevant=True)
    assert (binary.relevant, binary.irrelevant) == (1.0, 1 / 3)  # d2 of {d2}; d4 of {d3, d4, d5}
    assert (binary.relevant_count, binary.irrelevant_count) == (1, 3)


def test_grades_between_irrelevant_and_relevant_count_in_neither_share():
    assert relevance_kind(1, relevant_grade=2) is None  # Cranfield's "minimal interest"
    assert relevance_kind(1, relevant_grade=2, unjudged_irrelevant=True) is None
    assert relevance_kind(0, relevant_grade=2) == "irrelevant"
    assert relevance_kind(None, relevant_grade=2) is None
    assert relevance_kind(None, relevant_grade=2, unjudged_irrelevant=True) == "irrelevant"
    assert relevance_kind(2, relevant_grade=2) == "relevant"
