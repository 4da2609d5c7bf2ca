"""Tracking context reliance during fine-tuning.

- ``callback``: ``ContextRelianceCallback`` (a ``transformers.TrainerCallback``; imports transformers)
  and ``add_context_tracking(trainer, ...)``.
- ``probe``: the probe set and one (rank-sharded) evaluation pass through the evaluation core.
- ``inversion``: the running-peak inversion detector (pure Python).
- ``trajectory``: the ``trajectory.jsonl`` store (append, fsync, resume without duplicate steps).
- ``attention``: attention mass from the answer position to the context tokens.
- ``distributed``: split a probe set across ranks and gather the results in order.

Nothing here is imported by ``import ctxrely``; ``ctxrely.ContextRelianceCallback`` loads lazily.
"""
