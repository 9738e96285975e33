"""The evaluation suite behind ``python -m headrank_ir.bench``.

``datasets`` prepares each test collection's first stage, ``methods`` is the registry of
rankers under comparison, ``cells`` runs and stores one method on one dataset, ``report``
turns the stored cells into the results table, ``plots`` draws them; the measures (selectivity
and significance among them) come from ``headrank_ir.evaluation``; ``baselines`` holds the peers
(RankGPT, MiniLM). ``cli`` is the command.
"""
