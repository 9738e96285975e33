"""The evaluation suite behind ``python -m headrank_ir.bench``.

``datasets`` prepares each test collection's first stage, ``methods`` is the registry of
rankers under comparison, ``cells`` runs and stores one method on one dataset, ``report``
turns the stored cells into the results table, ``plots`` draws them; ``selectivity`` and
``significance`` are the measures the report adds; ``baselines`` holds the peers (RankGPT,
MiniLM). ``cli`` is the command.
"""
