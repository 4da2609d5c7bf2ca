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
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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


def _line_map(text: str) -> dict[str, int]:
    """``{"key": line, "lora.rank": line}`` of a YAML mapping (1-based lines)."""
    import yaml

    lines: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}{k.value}"
                lines[key] = k.start_mark.line + 1
                walk(v, f"{key}.")

    walk(yaml.compose(text), "")
    return lines


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` to the annotation ``tp`` (str numbers like ``1e-4`` are accepted)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        if value is None:  # `suites=` on the command line: an empty list
            return []
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], where) for v in value]
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != out:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return out
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{where}: unsupported type {tp!r}")


def _build(cls: Any, data: dict[str, Any], source: str, prefix: str = "", lines: dict[str, int] | None = None) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        line = (lines or {}).get(full)
        where = f"{source}{f', line {line}' if line else ''}, field {full!r}"
        if key not in names:
            import difflib

            near = difflib.get_close_matches(str(key), sorted(names), n=1)
            hint = f" (did you mean {prefix + near[0]!r}?)" if near else ""
            raise ConfigError(f"{where}: unknown key{hint}")
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a mapping")
            kwargs[key] = _build(hints[key], value, source, prefix=f"{full}.", lines=lines)
        else:
            kwargs[key] = _coerce(value, hints[key], where)
    return cls(**kwargs)


def _nest(overrides: list[str]) -> dict[str, Any]:
    """``["lr=1e-4", "lora.rank=8"]`` -> ``{"lr": 1e-4, "lora": {"rank": 8}}`` (values parsed as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. lr=1e-4 or lora.rank=8)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


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
    if cfg.lr <= 0 or cfg.num_epochs <= 0:
        raise ConfigError(f"{source}: fields 'lr' and 'num_epochs' must be positive")
    if cfg.save_steps is not None and cfg.save_steps < 1:
        raise ConfigError(f"{source}: field 'save_steps' must be >= 1 (or null for no checkpoints)")
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None, *, require_model: bool = True
                ) -> TrainConfig:
    """Read a YAML config (or none), apply ``key=value`` overrides, check every key and type.

    Raises:
        ConfigError: unknown key, wrong type or bad value, naming the file, line and field.
    """
    import yaml

    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    source = str(path) if path else "config"
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        text = p.read_text(encoding="utf-8")
        try:
            loaded = yaml.safe_load(text)
            lines = _line_map(text) if loaded else {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise ConfigError(f"{p}{f', line {mark.line + 1}' if mark else ''}: bad YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of config fields at the top level")
        data = loaded or {}
    cfg = _build(TrainConfig, data, source, lines=lines)
    if overrides:
        cfg = _build(TrainConfig, _merge(cfg.to_dict(), _nest(overrides)), "override")
    return validate(cfg, source) if require_model else cfg


def save_config(cfg: TrainConfig, out_dir: str | Path) -> Path:
    """Write the resolved config to ``<out_dir>/ctxrely_config.yaml`` (loadable by :func:`load_config`)."""
    import yaml

    path = Path(out_dir) / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def field_help() -> list[tuple[str, str, str]]:
    """``(name, default, help)`` of every field (nested ones as ``lora.rank``), for ``--help``."""
    rows = []
    for f in dataclasses.fields(TrainConfig):
        if dataclasses.is_dataclass(f.type) or f.name == "lora":
            for sub in dataclasses.fields(LoraSection):
                rows.append((f"lora.{sub.name}", repr(_default(sub)), sub.metadata["help"]))
        else:
            rows.append((f.name, repr(_default(f)), f.metadata["help"]))
    return rows


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None
