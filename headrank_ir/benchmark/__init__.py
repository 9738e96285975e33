"""The evaluation suite behind ``python -m headrank_ir.bench``.

``datasets`` prepares each test collection's first stage, ``methods`` is the registry of
rankers under comparison, ``cells`` runs and stores one method on one dataset, ``report``
turns the stored cells into the results table; plots live in :mod:`headrank_ir.plots`.
"""
