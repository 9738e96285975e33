"""Peers that HeadRank is benchmarked against: generative listwise (RankGPT) and dense (MiniLM)."""
