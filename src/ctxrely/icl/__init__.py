"""In-context example sampling for fine-tuning (IC-Train, Malu et al. 2026) and its diagnostics.

- :mod:`~ctxrely.icl.similarity`: target-to-demonstration similarity in [0, 1] (BM25, chrF, embed).
- :mod:`~ctxrely.icl.sampling`: zero / random / similar / contrastive contexts, near-duplicates.
- :mod:`~ctxrely.icl.rows`: IC-Train rows in the formats ``ctxrely train`` reads (``ctxrely icl-data``).
- :mod:`~ctxrely.icl.buckets`: accuracy per max-similarity bucket (Low / Medium / High) + zero-context.
- :mod:`~ctxrely.icl.probes`: ICL-score, IWL-score, Copy-score as callback probe suites.
- :mod:`~ctxrely.icl.lexicon`: an invented lexicon task where in-weights and in-context answers differ.

Definitions and every choice we made: ``docs/icl.md``.
"""
