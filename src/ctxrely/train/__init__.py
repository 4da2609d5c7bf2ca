"""Supervised fine-tuning with context-reliance tracking (``ctxrely train``).

``config`` (the ``TrainConfig`` dataclass, YAML + overrides) imports nothing heavy; ``data``
(dataset formats) and ``sft`` (``run_train`` through TRL ``SFTTrainer``) load torch on use.
"""
