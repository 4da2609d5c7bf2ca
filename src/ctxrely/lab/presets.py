"""Lab presets: every knob of a lab experiment in one dataclass, with named defaults.

* ``short``: SmolLM2-135M-Instruct, LoRA, a few dozen steps, a small conflict set; the part of
  ``make demo`` that fine-tunes (baseline and the ``no_ccs`` mitigation), minutes on a CPU.
* ``long``: the base Gemma 3 270M (the paper starts from base models), LoRA r32 on attention and
  MLP, several hundred steps with a decaying learning rate, 3 seeds, several hundred conflict items
  and all mitigations: hours on 2 CPU cores, minutes on a GPU (``--device cuda``).
* ``quick``: a tiny random model from :mod:`ctxrely.models.tiny`, for tests and ``ctxrely demo --quick``.

Example:
    >>> p = get_preset("short", max_steps=20)
    >>> p.model, p.max_steps
    ('smollm2-135m-instruct', 20)
    >>> get_preset("short", max_step=20)
    Traceback (most recent call last):
    ...
    ctxrely.errors.ConfigError: lab preset, field 'max_step': unknown key (did you mean 'max_steps'?)
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from ctxrely import config
from ctxrely.errors import ConfigError

RUNS = ("baseline", "filter", "no_ccs", "qk_only", "augment", "indicator", "filter_class", "filter_augment",
        "filter_qk", "augment_qk")
RUN_HELP = {
    "baseline": "the mixture as built",
    "filter": "drop the 25% of context points with the lowest response NLL without context (the most "
              "non-context-critical ones)",
    "no_ccs": "remove every C+S point (the ablation that removes the cause of the inversion in theory)",
    "qk_only": "train only the query/key projections",
    "augment": "add counterfactual copies of C+S points (context edited, answer follows the context)",
    "indicator": "append an indicator token to the question of every context point",
    "filter_class": "drop every point `score-data` classes C+S (base model's NLL without context <= 1 nat/token)",
    "filter_augment": "filter, then augment the rows kept",
    "filter_qk": "filter, and train only the query/key projections",
    "augment_qk": "augment, and train only the query/key projections",
}


@dataclass
class LabPreset:
    """One lab experiment: model, mixture, evaluation, fine-tuning and which runs to compare."""

    name: str = field(default="custom", metadata={"help": "preset name (written into every result)"})
    model: str = field(default="smollm2-135m-instruct",
                       metadata={"help": "zoo name, local folder or hub id of the model to fine-tune"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:1, ..."})
    dtype: str = field(default="auto", metadata={"help": "auto (float32 on CPU), float32, bfloat16, float16"})
    relations: list[str] = field(default_factory=list,
                                 metadata={"help": "fact relations to use (empty: all shipped relations)"})
    facts_per_relation: int = field(default=0, metadata={"help": "probe at most this many facts of each "
                                                                 "relation, chosen at random (0: all)"})
    probe: bool = field(default=True, metadata={"help": "probe the model closed-book and keep the facts it "
                                                        "knows; false keeps every fact (only for tiny random "
                                                        "models in tests and --quick: no real measurement)"})
    probe_method: str = field(default="generate", metadata={"help": "'generate' (closed-book greedy answer "
                                                                    "contains the object) or 'logits'"})
    n_heldout: int = field(default=48, metadata={"help": "known facts held out as conflict items (never "
                                                         "trained on)"})
    heldout_style: str = field(default="passage", metadata={"help": "'passage' (2-3 sentences that also "
                                                                    "mention the memorised answer) or 'sentence'"})
    eval_suites: list[str] = field(default_factory=list, metadata={
        "help": "built-in suites added to the conflict eval, kept to items the model knows"})
    eval_suite_limit: int = field(default=64, metadata={"help": "probe at most this many items per suite"})
    n_train: int = field(default=400, metadata={"help": "rows in the training mixture"})
    fractions: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.2],
                                   metadata={"help": "shares of C, C+S and S points (sum to 1)"})
    n_id: int = field(default=32, metadata={"help": "held-out in-distribution rows for ID accuracy"})
    finetune: str = field(default="lora", metadata={"help": "'lora' or 'full'"})
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lr: float = field(default=1e-4, metadata={"help": "peak learning rate (AdamW)"})
    lr_scheduler: str = field(default="constant_with_warmup",
                              metadata={"help": "transformers scheduler name: constant_with_warmup, linear, "
                                                "cosine, ..."})
    warmup_steps: int = field(default=5, metadata={"help": "linear warm-up steps"})
    max_steps: int = field(default=30, metadata={"help": "optimizer steps per run"})
    batch_size: int = field(default=8, metadata={"help": "training rows per step"})
    eval_every: int = field(default=10, metadata={"help": "evaluate the conflict set every N steps (and at "
                                                          "step 0)"})
    eval_mode: str = field(default="logits", metadata={"help": "'logits', 'generate' or 'both'"})
    eval_batch_size: int = field(default=16, metadata={"help": "batch size of the evaluations"})
    attention_subset: int = field(default=8, metadata={"help": "conflict items whose attention to the context "
                                                               "is logged at each evaluation (0: off)"})
    save_steps: int = field(default=0, metadata={"help": "checkpoint every N steps so an interrupted run resumes "
                                                         "mid-way (0: no checkpoints; a run restarts)"})
    max_length: int = field(default=512, metadata={"help": "truncate training sequences to this many tokens"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    augment_ratio: float = field(default=0.3, metadata={"help": "'augment' run: counterfactual copies added, as "
                                                                "a share of the rows"})
    indicator_threshold: float = field(default=0.6, metadata={"help": "'indicator' run: mark rows whose attention "
                                                                      "context-dependency exceeds this"})
    filter_drop: float = field(default=0.25, metadata={"help": "share of context points the 'filter' run drops"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "training seeds (one run dir each)"})
    runs: list[str] = field(default_factory=lambda: ["baseline", "no_ccs"],
                            metadata={"help": f"runs to compare: {', '.join(RUNS)}"})
    data_seed: int = field(default=0, metadata={"help": "seeds the probe subset, split and mixture (the "
                                                        "same data for every training seed)"})
    awareness_lengths: list[int] = field(default_factory=list, metadata={
        "help": "also track NIH recall at these context lengths and the answer's attention per token role, "
                "in the chat template, at every evaluation (empty: off)"})

    def __post_init__(self) -> None:
        self.awareness_lengths = [int(x) for x in self.awareness_lengths]  # --set gives strings
        checks = [
            (self.probe_method in ("generate", "logits"), "probe_method", "'generate' or 'logits'"),
            (self.heldout_style in ("passage", "sentence"), "heldout_style", "'passage' or 'sentence'"),
            (self.finetune in ("lora", "full"), "finetune", "'lora' or 'full'"),
            (self.eval_mode in ("logits", "generate", "both"), "eval_mode", "'logits', 'generate' or 'both'"),
            (len(self.fractions) == 3 and abs(sum(self.fractions) - 1) < 1e-6 and min(self.fractions) >= 0,
             "fractions", "three shares >= 0 summing to 1"),
            (0 <= self.filter_drop < 1, "filter_drop", "in [0, 1)"),
            (self.max_steps > 0 and self.batch_size > 0 and self.eval_every > 0, "max_steps",
             "positive (with batch_size, eval_every)"),
            (bool(self.seeds), "seeds", "at least one seed"),
            (all(s >= 0 for s in self.seeds), "seeds", "integers >= 0"),
        ]
        for ok, key, want in checks:
            if not ok:
                raise ConfigError(f"lab preset {self.name!r}: {key} must be {want}")
        bad = [r for r in self.runs if r not in RUNS]
        if bad or not self.runs:
            raise ConfigError(f"lab preset {self.name!r}: unknown run(s) {bad or '(none)'}; choose from "
                              f"{', '.join(RUNS)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    "short": dict(
        name="short", model="smollm2-135m-instruct", relations=["capital", "city_country", "author",
                                                                "landmark_country"],
        facts_per_relation=40, n_heldout=32, n_train=240, n_id=16, finetune="lora", lora_rank=16,
        lora_alpha=32, lr=5e-4, lr_scheduler="constant_with_warmup", warmup_steps=2, max_steps=18,
        batch_size=8, eval_every=6, seeds=[0], runs=["baseline", "no_ccs"],
    ),
    "long": dict(
        name="long", model="gemma3-270m", facts_per_relation=0, n_heldout=300, heldout_style="passage",
        eval_suites=["cf_capitals", "cf_world_facts"], eval_suite_limit=200, n_train=2000, n_id=64,
        finetune="lora", lora_rank=32, lora_alpha=64, lr=1e-4, lr_scheduler="cosine", warmup_steps=10,
        max_steps=400, batch_size=8, eval_every=20, seeds=[0, 1, 2],
        runs=["baseline", "filter", "no_ccs", "qk_only", "augment", "indicator", "filter_class",
              "filter_augment", "filter_qk", "augment_qk"],
    ),
    "quick": dict(
        name="quick", model="tiny", relations=["capital", "author"], facts_per_relation=24, probe=False,
        n_heldout=8, n_train=32, n_id=4, probe_method="logits", finetune="full", lr=1e-3, warmup_steps=0,
        max_steps=6, batch_size=4, eval_every=2, eval_batch_size=8, attention_subset=4, seeds=[0],
        runs=["baseline", "no_ccs"],
    ),
}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str, **overrides: Any) -> LabPreset:
    """The named preset with ``overrides`` applied; unknown names and keys raise ``ConfigError``."""
    if name not in PRESETS:
        near = difflib.get_close_matches(name, list(PRESETS), n=2, cutoff=0.5)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"unknown lab preset {name!r}{hint} (known: {', '.join(preset_names())})")
    return preset_from_dict({**PRESETS[name], **overrides})


def preset_from_dict(d: dict[str, Any], where: str = "lab preset") -> LabPreset:
    """A preset from a plain dict (e.g. a saved ``preset.json``), through the one config loader
    (:mod:`ctxrely.config`): unknown keys and wrong types raise ``ConfigError``."""
    return config.from_dict(LabPreset, d, where)


def help_table() -> list[tuple[str, str, str]]:
    """``(field, default, help)`` for every preset field, for docs and ``--help``."""
    return config.field_help(LabPreset)
