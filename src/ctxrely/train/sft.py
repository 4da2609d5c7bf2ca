"""``run_train``: supervised fine-tuning through TRL ``SFTTrainer`` with ``ContextRelianceCallback`` attached.

Full fine-tuning or LoRA (optionally QK-only), completion-only loss, the resolved config saved in
the run folder, resumable from its checkpoints. On CPU the LM head projects only the labelled
(completion) positions (see :func:`compact_lm_head`).

Example:
    >>> from ctxrely.train.config import load_config
    >>> cfg = load_config("examples/run.yaml", ["max_steps=20"])  # doctest: +SKIP
    >>> run_dir = run_train(cfg)  # doctest: +SKIP
    >>> sorted(p.name for p in run_dir.iterdir())[:3]  # doctest: +SKIP
    ['ctxrely_config.yaml', 'final', 'probe_set.jsonl']
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ctxrely.data.schema import ConflictExample
from ctxrely.errors import ConfigError
from ctxrely.train.config import TrainConfig, save_config, validate
from ctxrely.train.data import load_rows, probe_format, to_id_rows, to_sft_rows

log = logging.getLogger(__name__)


@contextlib.contextmanager
def compact_lm_head() -> Iterator[None]:
    """Make TRL's fused LM head project only the positions that have a label, on CPU too.

    TRL 1.16 computes the loss without materialising full logits (``add_fused_lm_head``), but on
    devices without Triton it projects *every* position (prompt and padding included) through the
    vocabulary and masks afterwards. With completion-only loss most positions are prompt, and on a
    CPU the output layer dominates the step. Inside this context the compaction TRL does on CUDA is
    used on CPU as well (same kernel, fewer rows; identical loss and gradients). TRL offers no public
    option for this, so the private ``_use_triton`` is patched; a warning, and a failing test, say
    when a TRL version no longer has it.
    """
    try:
        import trl.trainer.utils as tu
    except ImportError:
        yield
        return
    original = getattr(tu, "_use_triton", None)
    if original is None:  # TRL has no public switch for this; tests/test_train_sft.py notices when it moves
        log.warning("compact_lm_head: this TRL version has no trl.trainer.utils._use_triton; the LM head "
                    "projects every position (correct, slower on CPU)")
        yield
        return
    tu._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        tu._use_triton = original


def expose_head_bias(model: Any) -> None:
    """Give PEFT's trainable-tokens wrapper of a tied output layer the ``bias`` that TRL's fused LM head reads.

    With ``trainable_token_indices`` on a model whose output layer is tied to its input embeddings,
    PEFT wraps the output layer as well (a ``TrainableTokensWrapper`` sharing the input's token
    delta, so the new row trains on both sides). The wrapper answers ``weight`` with the merged
    weights (base rows plus trained rows) but has no ``bias``, and TRL's fused LM head (every
    ``SFTTrainer`` loss goes through it, compact or not) reads ``lm_head.bias``: the first step fails
    with ``AttributeError``. The wrapped layer's own bias (None for tied heads) is set on the wrapper
    as a plain attribute, so the fused head projects through the merged weight as ``nn.Linear``
    would. Other output layers are left as they are.

    Example:
        >>> expose_head_bias(trainer.model)  # doctest: +SKIP
        >>> trainer.model.get_output_embeddings().bias is None  # doctest: +SKIP
        True
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    base = getattr(head, "original_module", None)  # PEFT wrappers: the wrapped layer
    if head is None or base is None:
        return
    try:
        head.bias  # noqa: B018 - only whether it resolves
    except AttributeError:
        # object.__setattr__: a plain attribute, not a second registration of the base layer's parameter
        object.__setattr__(head, "bias", getattr(base, "bias", None))


def _trainer_class() -> Any:
    from trl import SFTTrainer

    class CtxSFTTrainer(SFTTrainer):
        """``SFTTrainer`` whose loss projects only labelled positions through the LM head."""

        compact = True

        def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            with compact_lm_head() if self.compact else contextlib.nullcontext():
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)

    return CtxSFTTrainer


def _device(cfg: TrainConfig) -> str:
    if cfg.device != "auto":
        return cfg.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _qk(model: Any, cfg: TrainConfig, ind_id: int | None = None) -> Any:
    """QK-only: freeze all but Q/K (full), or wrap in LoRA on Q/K (fused QKV: value part held fixed).

    An indicator token (``ind_id``) keeps a trainable embedding row under LoRA; full QK-only training
    freezes the embeddings, so the token stays at its initial (mean) embedding, and a warning says so.
    """
    if cfg.train_modules != "qk":
        return model
    from ctxrely.mitigate import qk_only

    if cfg.finetune == "lora":
        extra = {"trainable_token_indices": [ind_id]} if ind_id is not None else {}
        return qk_only.qk_lora(model, r=cfg.lora.rank, alpha=cfg.lora.alpha, dropout=cfg.lora.dropout, **extra)
    trainable = qk_only.freeze_all_but_qk(model)
    if ind_id is not None:
        log.warning("train_modules=qk with finetune=full freezes the embeddings: the indicator token %r keeps "
                    "its initial embedding (use finetune=lora to train it)", cfg.indicator)
    log.info("QK-only: training %d parameter tensors", len(trainable))
    return model


def _probe_files(paths: Sequence[str], examples: Any) -> Any:
    """``examples`` plus one suite per probe file (named by the file's stem); a name given twice raises."""
    if not paths:
        return examples
    from ctxrely.data.loaders import load_data

    merged = dict(examples or {})
    for path in paths:
        suite = load_data(path)
        if suite.name in merged:
            raise ConfigError(f"eval_data: suite {suite.name!r} ({path}) is given twice; rename the file")
        merged[suite.name] = list(suite.examples)
    return merged


def _resume_arg(cfg: TrainConfig, out: Path) -> str | bool | None:
    if not cfg.resume:
        return None
    if cfg.resume == "last":
        ckpts = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]))
        if not ckpts:
            raise ConfigError(f"resume: last: no checkpoint-* folder in {out}")
        return str(ckpts[-1])
    if not Path(cfg.resume).is_dir():
        raise ConfigError(f"resume: checkpoint folder not found: {cfg.resume}")
    return cfg.resume


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No datasets progress bars inside the block (restored after it)."""
    import datasets

    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            datasets.enable_progress_bars()


def run_train(
    cfg: TrainConfig,
    *,
    model: Any = None,
    tokenizer: Any = None,
    train_rows: list[dict[str, Any]] | None = None,
    eval_examples: dict[str, list[ConflictExample]] | None = None,
    id_rows: list[dict[str, Any]] | None = None,
    extra_callbacks: Sequence[Any] = (),
    probes: Sequence[Any] = (),
    progress: bool = True,
) -> Path:
    """Fine-tune as ``cfg`` says and return the run folder.

    Args:
        cfg: the resolved :class:`TrainConfig`.
        model / tokenizer: a preloaded model (default: ``load_model(cfg.model)``).
        train_rows: in-memory training rows in any supported format (default: read ``cfg.dataset``).
        eval_examples: in-memory probe suites ``{name: [ConflictExample]}``, added to ``cfg.suites``.
        id_rows: in-memory in-distribution rows (any supported format), added to ``cfg.id_sets``.
        extra_callbacks: further ``TrainerCallback`` objects.
        probes: extra tracking probes ``probe(model, tokenizer) -> {metric: value}`` (e.g. NIH recall).
        progress: the trainer's progress bar (False: no bar and no printed log dicts either).
    """
    validate(cfg)
    # read every data file before anything is written, so a missing dataset leaves no run folder behind
    if train_rows is not None:
        raw: list[Any] = list(train_rows)
    elif cfg.dataset:
        raw = load_rows(cfg.dataset, cfg.dataset_split, cfg.max_train_samples)
    else:
        raise ConfigError("field 'dataset' is required (or pass train_rows)")
    id_raw = {path: load_rows(path) for path in cfg.id_sets}
    eval_examples = _probe_files(cfg.eval_data, eval_examples)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from ctxrely.engine.distributed import launch_info
    from ctxrely.engine.resume import RunLock

    with RunLock(out, *launch_info()):  # one training per folder: a second one is refused with one line
        return _fit(cfg, out, raw, id_raw, eval_examples, model=model, tokenizer=tokenizer, id_rows=id_rows,
                    extra_callbacks=extra_callbacks, probes=probes, progress=progress,
                    source=str(cfg.dataset) if train_rows is None else "<rows>")


def _fit(cfg: TrainConfig, out: Path, raw: list[Any], id_raw: dict[str, Any],
         eval_examples: dict[str, list[ConflictExample]] | None, *, model: Any, tokenizer: Any,
         id_rows: list[dict[str, Any]] | None, extra_callbacks: Sequence[Any], probes: Sequence[Any],
         progress: bool, source: str) -> Path:
    """:func:`run_train` once its inputs are read and the run folder is locked."""
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig

    from ctxrely.track.callback import ContextRelianceCallback

    resume = _resume_arg(cfg, out)
    save_config(cfg, out)
    set_seed(cfg.seed)
    device = _device(cfg)
    if model is None or tokenizer is None:
        from ctxrely.models.load import load_model

        model, tokenizer = load_model(cfg.model, dtype=cfg.dtype, device=device,
                                      trust_remote_code=cfg.trust_remote_code)
    sft_rows = to_sft_rows(raw, cfg.dataset_format, prompt_format=cfg.prompt_format, tokenizer=tokenizer,
                           path=source)
    if cfg.max_train_samples:
        sft_rows = sft_rows[:cfg.max_train_samples]
    id_sets: dict[str, list[dict[str, str]]] = {}
    if cfg.id_holdout:
        if cfg.id_holdout >= len(sft_rows):
            raise ConfigError(f"id_holdout={cfg.id_holdout} leaves no training rows (dataset has {len(sft_rows)})")
        id_sets["heldout"] = to_id_rows(sft_rows[-cfg.id_holdout:], tokenizer)
        sft_rows = sft_rows[:-cfg.id_holdout]
    for path, rows in id_raw.items():
        id_sets[Path(path).stem] = to_id_rows(to_sft_rows(rows, prompt_format=cfg.prompt_format, tokenizer=tokenizer,
                                                          path=path), tokenizer)
    if id_rows:
        id_sets["id"] = to_id_rows(to_sft_rows(id_rows, prompt_format=cfg.prompt_format, tokenizer=tokenizer),
                                   tokenizer)
    eval_fmt = cfg.eval_format if cfg.eval_format != "auto" else probe_format(cfg.dataset_format, raw, sft_rows,
                                                                               cfg.prompt_format)
    callback = ContextRelianceCallback(
        suites=cfg.suites, examples=eval_examples, id_sets=id_sets or None, eval_every=cfg.eval_every,
        mode=cfg.eval_mode, metric=cfg.metric, limit=cfg.eval_limit, fmt=eval_fmt, indicator=cfg.indicator,
        drop_threshold=cfg.drop_threshold, patience=cfg.patience, on_inversion=cfg.on_inversion,
        attention_subset=cfg.attention_subset, output_dir=out, tokenizer=tokenizer,
        max_new_tokens=cfg.eval_max_new_tokens, probes=probes)
    ind_id = None
    if cfg.indicator:  # data marked by `ctxrely filter --indicator` holds this token: give it an embedding
        from ctxrely.mitigate.indicator import add_indicator_token

        ind_id = add_indicator_token(model, tokenizer, cfg.indicator)
    model = _qk(model, cfg, ind_id)
    peft_config = None
    if cfg.finetune == "lora" and cfg.train_modules != "qk":
        from peft import LoraConfig

        targets: Any = cfg.lora.target_modules
        peft_config = LoraConfig(r=cfg.lora.rank, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                 target_modules=targets[0] if targets == ["all-linear"] else targets,
                                 trainable_token_indices=[ind_id] if ind_id is not None else None,
                                 task_type="CAUSAL_LM")
    args = SFTConfig(
        output_dir=str(out), run_name=cfg.run_name or out.name, max_steps=cfg.max_steps or -1,
        num_train_epochs=cfg.num_epochs, learning_rate=cfg.lr, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, max_length=cfg.max_length, seed=cfg.seed,
        logging_steps=cfg.logging_steps, save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500, save_total_limit=cfg.save_total_limit, report_to=cfg.report_to,
        use_cpu=device == "cpu", completion_only_loss=cfg.completion_only_loss,
        bf16=cfg.dtype == "bfloat16" and device != "cpu", fp16=cfg.dtype == "float16" and device != "cpu",
        disable_tqdm=not progress)
    with contextlib.nullcontext() if progress else _quiet_datasets():  # SFTTrainer tokenizes with datasets.map
        trainer = _trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(sft_rows),
                                   processing_class=tokenizer, peft_config=peft_config)
    trainer.compact = cfg.compact_lm_head
    if not progress:  # disable_tqdm swaps the bar for a callback that prints every log dict: drop it too
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    expose_head_bias(trainer.model)  # a trainable indicator token on a tied output layer (LoRA)
    kept = len(trainer.train_dataset)
    if kept == 0:
        raise ConfigError(f"every training row was dropped: no completion token survives truncation to "
                          f"max_length={cfg.max_length} (prompts too long?); raise max_length")
    if kept < len(sft_rows):
        log.warning("%d of %d training rows dropped: their completion does not fit in max_length=%d",
                    len(sft_rows) - kept, len(sft_rows), cfg.max_length)
    callback.attach(trainer)
    for cb in extra_callbacks:
        trainer.add_callback(cb)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    log.info("training %s (%s, %d trainable parameters) on %d rows; probes in %s format", cfg.model,
             cfg.finetune, trainable, len(sft_rows), eval_fmt)
    trainer.train(resume_from_checkpoint=resume)
    if cfg.save_final:
        trainer.save_model(str(out / "final"))
    return out
