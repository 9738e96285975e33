"""Evaluation, in ir_measures' spirit: what a measure is apart from how runs are tabled.

- ``measures``: ir_measures over runs and qrels, as means or per query; runs read as scores.
- ``selectivity``: our own measure, the reference paper's homogenisation of the middle.
- ``significance``: paired tests over queries (randomisation, t-test, wins/losses/ties).
- ``tables``: what the commands print — measures by run, per-query lines, gain, comparison.

The ``evaluate`` command, the bench and training all measure through this package.
"""
