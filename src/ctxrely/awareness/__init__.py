"""Context-awareness under chat templates (Wang et al. 2024): needle in a haystack, attention allocation.

Modules: ``haystack`` (essays, needles), ``nih`` (the grid of prompts), ``nih_score`` (keyword
recall), ``nih_run`` (run a grid with resume), ``roles`` + ``allocation`` (attention mass per token
role), ``plots`` (heatmap, bars, report sections), ``probes`` (training-callback probes).
"""
