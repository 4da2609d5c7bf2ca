"""The ``ctxrely train`` config: a dataclass whose fields carry their help text, loaded from YAML
plus ``key=value`` overrides. Unknown keys and wrong types are errors naming the file, line and field.

Example:
    >>> cfg = load_config(None, ["model=./tiny", "dataset=train.jsonl", "lr=1e-4", "lora.rank=8",
    ...                          "finetune=lora", "suites=cf_capitals,cf_bio"])
    >>> cfg.lr, cfg.lora.rank, cfg.suites
    (0.0001, 8, ['cf_capitals', 'cf_bio'])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ctxrely import config
from ctxrely.errors import ConfigError

CONFIG_NAME = "ctxrely_config.yaml"


@dataclass
class LoraSection:
    """LoRA settings (used when ``finetune: lora``)."""

    rank: int = field(default=16, metadata={"help": "LoRA rank r"})
    alpha: int = field(default=32, metadata={"help": "LoRA alpha (scaling = alpha / rank)"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"], metadata={
        "help": "module names to adapt, or ['all-linear']; replaced by the Q/K projections when train_modules=qk"})


@dataclass
class TrainConfig:
    """Supervised fine-tuning through TRL ``SFTTrainer`` with context-reliance tracking attached."""

    model: str = field(default="", metadata={"help": "zoo name (ctxrely models), local folder or hub id"})
    dataset: str | None = field(default=None, metadata={
        "help": "training data: a local .jsonl/.json/.csv file or a hub dataset id"})
    dataset_split: str = field(default="train", metadata={"help": "split of a hub dataset"})
    dataset_format: Literal["auto", "alpaca", "messages", "prompt_completion"] = field(default="auto", metadata={
        "help": "alpaca (instruction/input/output), messages (chat), prompt_completion, or auto-detect"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use the first n training rows"})
    prompt_format: str = field(default="alpaca", metadata={
        "help": "how alpaca rows become prompts (a ctxrely format: raw, alpaca, tulu, chat, ...)"})
    completion_only_loss: bool = field(default=True, metadata={
        "help": "train on the completion tokens only (the prompt is masked out of the loss)"})
    output_dir: str = field(default="runs/train", metadata={"help": "run folder (checkpoints, trajectory, config)"})
    run_name: str | None = field(default=None, metadata={"help": "label of this run in reports (default: folder)"})
    max_steps: int | None = field(default=None, metadata={"help": "optimizer steps; overrides num_epochs when set"})
    num_epochs: float = field(default=1.0, metadata={"help": "epochs over the training data"})
    lr: float = field(default=2e-5, metadata={"help": "peak learning rate"})
    lr_scheduler: str = field(default="linear", metadata={
        "help": "transformers schedule name: linear, cosine, constant, constant_with_warmup, ..."})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    batch_size: int = field(default=8, metadata={"help": "per-device batch size"})
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps per optimizer step"})
    max_length: int = field(default=1024, metadata={"help": "truncate training sequences to this many tokens"})
    seed: int = field(default=0, metadata={"help": "random seed (data order, LoRA init)"})
    finetune: Literal["full", "lora"] = field(default="full", metadata={"help": "full fine-tuning or LoRA"})
    lora: LoraSection = field(default_factory=LoraSection, metadata={"help": "LoRA settings"})
    train_modules: Literal["all", "qk"] = field(default="all", metadata={
        "help": "all parameters, or only the attention query/key projections (QK-only mitigation)"})
    indicator: str | None = field(default=None, metadata={
        "help": "indicator token appended to probe questions (indicator-token fine-tuning)"})
    eval_every: int = field(default=50, metadata={"help": "evaluate context reliance every N optimizer steps"})
    suites: list[str] = field(default_factory=lambda: ["cf_capitals"], metadata={
        "help": "knowledge-conflict suites to probe (ctxrely ls)"})
    eval_limit: int | None = field(default=64, metadata={"help": "first n examples of each suite"})
    eval_mode: Literal["logits", "generate", "both"] = field(default="logits", metadata={
        "help": "logits (cheap), generate, or both"})
    eval_max_new_tokens: int = field(default=32, metadata={
        "help": "generate/both probes: the most tokens generated per answer"})
    eval_format: str = field(default="auto", metadata={
        "help": "prompt format of the probes; auto: prompt_format for alpaca data, chat for messages, raw otherwise"})
    eval_data: list[str] = field(default_factory=list, metadata={
        "help": "probe files tracked beside the suites, each a suite named by its file stem (any format "
                "ctxrely eval --data reads, e.g. the ICL probes of ctxrely icl-data --probes)"})
    id_sets: list[str] = field(default_factory=list, metadata={
        "help": "in-distribution probe files (same formats as dataset), scored by greedy match"})
    id_holdout: int = field(default=0, metadata={
        "help": "hold out the last n training rows as an in-distribution probe (not trained on)"})
    metric: str | None = field(default=None, metadata={
        "help": "metric the inversion detector watches (default <suite>/logit_cf_rate or all/...)"})
    drop_threshold: float = field(default=10.0, metadata={"help": "drop from the peak (points) that counts"})
    patience: int = field(default=2, metadata={"help": "consecutive evaluations the drop must last"})
    on_inversion: Literal["warn", "stop", "keep_peak"] = field(default="warn", metadata={
        "help": "warn, stop training, or keep the peak-reliance checkpoint"})
    attention_subset: int = field(default=16, metadata={"help": "examples for attention-to-context (0: off)"})
    logging_steps: int = field(default=10, metadata={"help": "log the loss every N steps"})
    save_steps: int | None = field(default=None, metadata={"help": "checkpoint every N steps (None: no checkpoints)"})
    save_total_limit: int | None = field(default=2, metadata={"help": "keep at most n checkpoints"})
    save_final: bool = field(default=True, metadata={"help": "save the final model to <output_dir>/final"})
    resume: str | None = field(default=None, metadata={"help": "'last' or a checkpoint folder to resume from"})
    report_to: str = field(default="none", metadata={"help": "trackers: none, tensorboard, wandb, trackio, ..."})
    device: str = field(default="auto", metadata={"help": "auto (cuda if available), cpu, cuda, cuda:1, ..."})
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(default="auto", metadata={
        "help": "model dtype"})
    trust_remote_code: bool = field(default=False, metadata={"help": "run code shipped with the model"})
    compact_lm_head: bool = field(default=True, metadata={
        "help": "project only labelled (completion) positions through the LM head on CPU too"})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate(cfg: TrainConfig, source: str = "config") -> TrainConfig:
    """Cross-field checks (required fields, positive counts)."""
    if not cfg.model:
        raise ConfigError(f"{source}: field 'model' is required (a zoo name, local folder or hub id)")
    for name in ("batch_size", "grad_accum", "max_length", "eval_every", "patience", "logging_steps",
                 "eval_max_new_tokens"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{source}: field {name!r} must be >= 1, got {getattr(cfg, name)}")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise ConfigError(f"{source}: field 'max_steps' must be >= 1, got {cfg.max_steps}")
    for name in ("lr", "num_epochs", "weight_decay", "drop_threshold"):
        v = getattr(cfg, name, None)
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{source}: field {name!r} must be a finite number, got {v}")
    if cfg.lr <= 0 or cfg.num_epochs <= 0:
        raise ConfigError(f"{source}: fields 'lr' and 'num_epochs' must be positive")
    if cfg.save_steps is not None and cfg.save_steps < 1:
        raise ConfigError(f"{source}: field 'save_steps' must be >= 1 (or null for no checkpoints)")
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None, *, require_model: bool = True
                ) -> TrainConfig:
    """Read a YAML config (or none), apply ``key=value`` overrides, check every key and type
    (through the one config loader, :mod:`ctxrely.config`).

    Raises:
        ConfigError: unknown key, wrong type or bad value, naming the file, line and field.
    """
    cfg = config.load(TrainConfig, path, overrides)
    return validate(cfg, str(path) if path else "config") if require_model else cfg


def save_config(cfg: TrainConfig, out_dir: str | Path) -> Path:
    """Write the resolved config to ``<out_dir>/ctxrely_config.yaml`` (loadable by :func:`load_config`)."""
    import yaml

    path = Path(out_dir) / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def field_help() -> list[tuple[str, str, str]]:
    """``(name, default, help)`` of every field (nested ones as ``lora.rank``), for ``--help``."""
    return config.field_help(TrainConfig)
