"""ctxrely.diagnose: which training examples need their context (light: no torch at import).

Importing this package registers the scorers in ``ctxrely.registry.SCORERS``.

Example:
    >>> from ctxrely.diagnose import load_sft, score_criticality  # doctest: +SKIP
    >>> rows = score_criticality(model, tok, load_sft("train.jsonl").examples)  # doctest: +SKIP
"""

from ctxrely.data.records import write_rows
from ctxrely.data.sft import SFTData, SFTExample, load_sft
from ctxrely.diagnose.attention_score import context_dependency, encode_example
from ctxrely.diagnose.criticality import classify, reclassify, score_criticality

__all__ = ["SFTData", "SFTExample", "classify", "context_dependency", "encode_example", "load_sft", "reclassify",
           "score_criticality", "write_rows"]
