"""Training a HeadRank profile on judged queries (``python -m headrank_ir.train``); the committed
profiles each took one TREC DL year, 43 or 54 queries.

- ``examples``: judged queries with their first-stage candidates; every head's attention on them.
- ``selection``: head quality (nDCG of each head's ranking) penalised by attention entropy; top k.
- ``pairs``: adjacent-level preference pairs (3>2, 2>1, 1>0), hard and middle-of-context first.
- ``objective``: pairwise Bradley–Terry loss on attention scores plus the distribution regulariser.
- ``alignment``: optimises head weights and LoRA on q/k projections; checkpoints and resumes.
- ``recipe``: the three stages end to end, writing a profile and its adapter.
- ``settings``: the training settings as flags.
- ``cli``: the command and its subcommands (``fit``, ``loco``, ``pseudo``, ``ablation``).

The research that chose the shipped profiles (``train loco``, ``train pseudo``, ``train ablation``):

- ``store``: where it reads and writes (``runs/``, ``.cache/loco/``, the shared data).
- ``features``: every head's reading of every labelled query, cached per query; read back.
- ``grid``: selection recipes × fusions scored from the features, leave-one-collection-out.
- ``nested``, ``ceiling``, ``weights``, ``align_folds``: the evaluations; ``reports``: their Markdown.
- ``pseudo``: inverse-cloze pseudo-query lists; ``ablation``: train on one DL year, test on the other.
"""
