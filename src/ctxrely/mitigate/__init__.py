"""ctxrely.mitigate: fixes for context-parametric inversion (light: no torch at import).

Importing this package registers the fixes in ``ctxrely.registry.MITIGATIONS``.

Example:
    >>> from ctxrely.mitigate import filter_rows, freeze_all_but_qk  # doctest: +SKIP
"""

from ctxrely.mitigate.augment import augment, augment_rows
from ctxrely.mitigate.filter import filter_rows
from ctxrely.mitigate.indicator import add_indicator_token, apply_indicator
from ctxrely.mitigate.qk_only import freeze_all_but_qk, guard_fused_lora, qk_lora, qk_lora_targets

__all__ = ["add_indicator_token", "apply_indicator", "augment", "augment_rows", "filter_rows", "freeze_all_but_qk",
           "guard_fused_lora", "qk_lora", "qk_lora_targets"]
