"""The metric catalogue shown by ``ctxrely ls`` (names, modes, meaning)."""

from __future__ import annotations

from ctxrely.registry import METRICS

_METRICS = {
    "cf_acc": ("generate", "share of outputs containing the counterfactual (context) answer"),
    "param_acc": ("generate", "share of outputs containing the parametric (memorised) answer"),
    "cf_only": ("generate", "share with the context answer and not the memorised one"),
    "param_only": ("generate", "share with the memorised answer and not the context one"),
    "both": ("generate", "share with both answers (often copying a context that names both)"),
    "neither": ("generate", "share with neither answer"),
    "logit_cf_rate": ("logits", "share of items where log p(cf answer) > log p(param answer)"),
    "m_c": ("logits", "mean p_cf / (p_cf + p_param), Theorem 1 of Goyal et al. 2024"),
    "logp_margin": ("logits", "mean log p(cf) - log p(param)"),
}

for _name, (_mode, _desc) in _METRICS.items():
    METRICS.add(_name, _mode, description=_desc, mode=_mode)

from ctxrely.metrics.rc import RC_METRICS  # noqa: E402  reading comprehension (gold answers only)

for _name, _facts in RC_METRICS.items():
    METRICS.add(_name, _facts["mode"], description=_facts["description"], mode=_facts["mode"])
