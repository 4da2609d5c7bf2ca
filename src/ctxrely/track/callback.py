"""``ContextRelianceCallback``: watch context reliance during fine-tuning (``Trainer``, TRL ``SFTTrainer``).

At step 0 and every ``eval_every`` optimizer steps it evaluates the probe set on the in-memory
model (eval mode, train mode restored after), sends the metrics through ``trainer.log`` (so every
``report_to`` tracker gets them), appends a row to ``trajectory.jsonl`` and runs the inversion
detector. Five lines of user code:

Example:
    >>> from ctxrely import ContextRelianceCallback
    >>> trainer = SFTTrainer(model=model, args=SFTConfig(output_dir="runs/a"), train_dataset=ds)  # doctest: +SKIP
    >>> cb = ContextRelianceCallback(suites=["cf_capitals"], eval_every=50).attach(trainer)  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP
    >>> # runs/a/trajectory.jsonl: {"step": 0, "cf_capitals/logit_cf_rate": 0.71, ...}, {"step": 50, ...}

A ``TrainerCallback`` gets no trainer reference, so ``attach(trainer)`` (or
:func:`add_context_tracking`) registers the callback *and* keeps the trainer for ``trainer.log``.
Passed as ``Trainer(callbacks=[cb])`` instead, it finds its trainer on the call stack at
``on_train_begin``.
"""

from __future__ import annotations

import inspect
import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ctxrely.data.schema import ConflictExample
from ctxrely.track.distributed import all_gather
from ctxrely.track.inversion import InversionDetector, points_scale
from ctxrely.track.probe import build_probe, run_probe
from ctxrely.track.trajectory import TrajectoryStore

log = logging.getLogger(__name__)


def _model_tokenizer(model: Any) -> Any:
    from ctxrely.errors import ConfigError, ModelLoadError
    from ctxrely.models.load import tokenizer_of

    try:
        return tokenizer_of(model)
    except ModelLoadError as e:
        raise ConfigError(f"ContextRelianceCallback needs a tokenizer: none was given and {e}; pass tokenizer=... "
                          "or processing_class=... to the trainer") from e

ACTIONS = ("warn", "stop", "keep_peak")
PEAK_DIR = "peak-checkpoint"


class ContextRelianceCallback(TrainerCallback):
    """Evaluate context reliance every N optimizer steps and detect context-parametric inversion.

    Args:
        suites: built-in suite names (``ctxrely ls``).
        examples: in-memory ``{suite_name: [ConflictExample, ...]}``.
        id_sets: in-distribution probes: a list of ``{"prompt", "completion"}`` dicts (named ``id``) or
            ``{name: [...]}``; scored by teacher-forced greedy match (``id/<name>/acc``) and mean
            completion log-prob per token (``id/<name>/logp``).
        eval_every: evaluate every N optimizer steps (and at step 0 and the last step).
        mode: ``logits`` (cheap: log p(cf) vs log p(param)), ``generate`` or ``both``.
        metric: the metric the detector watches; default ``<suite>/logit_cf_rate`` for one suite,
            ``all/logit_cf_rate`` for several (``cf_acc`` in generate mode).
        limit: first n examples of each suite (default 64).
        fmt: prompt format (``raw``, ``alpaca``, ``chat``, ... or a template); use the training format.
        indicator: text appended to each question (indicator-token fine-tuning).
        drop_threshold: drop from the running peak, in points (percentage points for rates), that
            counts as a fall (default 10).
        patience: consecutive evaluations the fall must last to confirm an inversion (default 2).
        on_inversion: ``warn`` (log only), ``stop`` (stop training at the inversion) or ``keep_peak``
            (save the model at every new peak to ``<output_dir>/peak-checkpoint``); a list combines them.
        attention_subset: examples for the attention-to-context probe (0 disables; default 16).
        strict: re-raise an exception inside an evaluation (default: log it, training goes on).
        output_dir: where the trajectory goes (default: the trainer's ``output_dir``).
        batch_size / max_new_tokens: scoring settings (as in ``ctxrely eval``).
        log_prefix: prefix of the keys sent to ``trainer.log`` (trajectory rows keep bare keys).
        tokenizer: the tokenizer (default: the trainer's ``processing_class``).
        probes: extra callables ``probe(model, tokenizer) -> {metric: value}`` run at every evaluation
            (e.g. ``ctxrely.awareness.probes.NIHProbe``, ``AttentionRoleProbe``).
        settings: one :class:`~ctxrely.engine.settings.EvalSettings` (format, mode, limit, batching,
            decode strategy, ...) instead of ``limit``/``fmt``/``mode``/``indicator``/``batch_size``/
            ``max_new_tokens``: the probe then measures exactly what ``ctxrely.evaluate`` does with it.
    """

    def __init__(
        self,
        suites: Sequence[str] | None = None,
        *,
        examples: Mapping[str, Sequence[ConflictExample]] | None = None,
        id_sets: Sequence[Mapping[str, str]] | Mapping[str, Sequence[Mapping[str, str]]] | None = None,
        eval_every: int = 50,
        mode: str = "logits",
        metric: str | None = None,
        limit: int | None = 64,
        fmt: str = "raw",
        indicator: str | None = None,
        drop_threshold: float = 10.0,
        patience: int = 2,
        on_inversion: str | Sequence[str] = "warn",
        attention_subset: int = 16,
        strict: bool = False,
        output_dir: str | Path | None = None,
        batch_size: int = 16,
        max_new_tokens: int = 32,
        log_prefix: str = "ctxrely/",
        tokenizer: Any = None,
        probes: Sequence[Any] = (),
        settings: Any = None,
    ) -> None:
        if isinstance(suites, str):
            suites = [suites]
        if not (isinstance(eval_every, int) and eval_every >= 1):
            raise ValueError(f"eval_every must be an integer >= 1, got {eval_every!r}")
        if not (isinstance(attention_subset, int) and attention_subset >= 0):
            raise ValueError(f"attention_subset must be an integer >= 0, got {attention_subset!r}")
        actions = (on_inversion,) if isinstance(on_inversion, str) else tuple(on_inversion)
        bad = [a for a in actions if a not in ACTIONS]
        if bad or not actions:
            raise ValueError(f"on_inversion must be among {', '.join(ACTIONS)}, got {on_inversion!r}")
        self.probe = build_probe(suites, examples, id_sets, limit=limit, fmt=fmt, mode=mode, indicator=indicator,
                                 batch_size=batch_size, max_new_tokens=max_new_tokens,
                                 attention_subset=attention_subset, settings=settings)
        default_kind = "cf_acc" if self.probe.mode == "generate" else "logit_cf_rate"
        self.metric = metric or f"{'all' if len(self.probe.suites) > 1 else self.probe.suites[0]}/{default_kind}"
        if self.metric not in self.probe.metric_names():
            raise ValueError(f"metric {self.metric!r} is not produced by this probe (mode={self.probe.mode}); choose from "
                             f"{', '.join(self.probe.metric_names())}")
        self.detector = InversionDetector(drop_threshold, patience, scale=points_scale(self.metric))
        self.eval_every, self.actions, self.strict = eval_every, actions, strict
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.log_prefix, self.tokenizer = log_prefix, tokenizer
        self.probes = list(probes)
        if not all(callable(p) for p in self.probes):
            raise TypeError("probes must be callables probe(model, tokenizer) -> {metric: value}")
        self.trainer: Any = None
        self.store: TrajectoryStore | None = None
        self.done_steps: set[int] = set()
        self.n_errors = 0
        self._warned_no_trainer = False

    # -- wiring ---------------------------------------------------------------------------------
    def attach(self, trainer: Any) -> ContextRelianceCallback:
        """Register with ``trainer`` (if not yet) and keep it for ``trainer.log``; returns ``self``."""
        self.trainer = trainer
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    def _find_trainer(self) -> Any:
        from transformers import Trainer

        frame = inspect.currentframe()
        try:
            while frame is not None:
                obj = frame.f_locals.get("self")
                if isinstance(obj, Trainer) and self in obj.callback_handler.callbacks:
                    return obj
                frame = frame.f_back
        finally:
            del frame
        return None

    def settings(self) -> dict[str, Any]:
        """What this callback measures, written to ``tracking.json`` (the report reads it)."""
        d = self.detector
        return {"metric": self.metric, "suites": self.probe.suites, "mode": self.probe.mode,
                "format": self.probe.fmt.name, "indicator": self.probe.indicator, "eval_every": self.eval_every,
                "n_examples": len(self.probe.examples), "id_sets": sorted(self.probe.id_sets),
                "attention_subset": len(self.probe.attention_idx), "drop_threshold": d.drop_threshold,
                "patience": d.patience, "scale": d.scale, "on_inversion": list(self.actions)}

    # -- events ---------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.trainer is None:
            self.trainer = self._find_trainer()
        for key in ("processing_class", "tokenizer"):
            if self.tokenizer is None:
                self.tokenizer = kwargs.get(key)
        if self.tokenizer is None:
            self.tokenizer = _model_tokenizer(model if model is not None else getattr(self.trainer, "model", None))
        self.store = TrajectoryStore(self.output_dir or args.output_dir)
        kept = self.store.prepare(state.global_step) if state.is_world_process_zero else None
        kept = all_gather(kept)[0] or []  # every rank replays the main process's rows
        self.done_steps = {int(r["step"]) for r in kept}
        self.detector = InversionDetector(self.detector.drop_threshold, self.detector.patience, self.detector.scale)
        for r in kept:
            self.detector.update(int(r["step"]), r.get(self.metric))
        if self.detector.inverted:
            log.warning("resuming after an inversion already detected at step %d", self.detector.event.step)
        if state.is_world_process_zero:
            if state.global_step == 0 or not self.store.probe_path.exists():
                self.store.write_probe_set([{**e.to_dict(), "meta": None} for e in self.probe.examples])
            self.store.write_settings(self.settings())
        self._evaluate(args, state, control, model)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step % self.eval_every == 0:
            self._evaluate(args, state, control, model)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._evaluate(args, state, control, model)

    # -- one evaluation -------------------------------------------------------------------------
    def _evaluate(self, args: Any, state: Any, control: Any, model: Any) -> None:
        step = int(state.global_step)
        if step in self.done_steps or model is None:
            return
        self.done_steps.add(step)
        was_training = model.training
        t0 = time.perf_counter()
        model.eval()
        try:
            try:
                result = run_probe(model, self.tokenizer, self.probe)
                for probe in self.probes:
                    result.metrics.update(probe(model, self.tokenizer))
            except Exception:
                self.n_errors += 1
                if self.strict:
                    raise
                log.exception("ctxrely: evaluation at step %d failed; training goes on (strict=False)", step)
                return
            metrics = dict(result.metrics)
            before_peak = self.detector.peak
            event = self.detector.update(step, metrics.get(self.metric))
            metrics.update({f"inversion/{k}": v for k, v in self.detector.state().items()})
            row: dict[str, Any] = {"step": step, "epoch": state.epoch, "eval_seconds": time.perf_counter() - t0,
                                   "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   "metric": self.metric, **metrics}
            if event is not None:
                row["inversion_event"] = event.to_dict()
            if state.is_world_process_zero:
                assert self.store is not None
                self.store.append(row, result.example_rows)
                # still in eval mode: SFTTrainer.log merges its per-mode training buffers only in train mode
                self._log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, state)
            new_peak = self.detector.peak_step == step and (before_peak is None or self.detector.peak != before_peak)
            if "keep_peak" in self.actions and new_peak:
                self._save_peak(model, args, state, metrics.get(self.metric))
            if event is not None:
                self._on_inversion(event, control, state, args)
        finally:
            if was_training:
                model.train()

    def _log(self, metrics: dict[str, float], state: Any) -> None:
        logs = {f"{self.log_prefix}{k}": float(v) for k, v in metrics.items()}
        if self.trainer is not None:
            # CallbackHandler.on_log clears should_log; keep the trainer's own loss log of this step
            # (and, under DDP, its loss all-gather, which every rank must reach).
            control = self.trainer.control
            keep = control.should_log
            self.trainer.log(logs)
            self.trainer.control.should_log = keep
            return
        if not self._warned_no_trainer:
            log.warning("ContextRelianceCallback has no trainer (use cb.attach(trainer)); metrics go to "
                        "trajectory.jsonl and state.log_history but not to report_to trackers")
            self._warned_no_trainer = True
        state.log_history.append({**logs, "step": state.global_step})

    def _on_inversion(self, event: Any, control: Any, state: Any, args: Any) -> None:
        log.warning("ctxrely: context-parametric inversion at step %d: %s fell %.1f points from its peak %.3f "
                    "(step %d) to %.3f", event.step, self.metric, event.drop, event.peak, event.peak_step, event.value)
        if state.is_world_process_zero:
            assert self.store is not None
            path = self.store.dir / "inversion.json"
            path.write_text(json.dumps({"metric": self.metric, **event.to_dict()}, indent=2) + "\n", encoding="utf-8")
        if "stop" in self.actions:
            log.warning("ctxrely: stopping training at the inversion (on_inversion='stop')")
            control.should_training_stop = True

    def _save_peak(self, model: Any, args: Any, state: Any, value: float | None) -> None:
        assert self.store is not None
        final, tmp = self.store.dir / PEAK_DIR, self.store.dir / f"{PEAK_DIR}.tmp"
        if self.trainer is not None:  # handles DDP/FSDP/DeepSpeed: every rank takes part
            self.trainer.save_model(str(tmp))
        elif state.is_world_process_zero:
            model.save_pretrained(str(tmp), safe_serialization=True)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(str(tmp))
        if state.is_world_process_zero:
            (tmp / "ctxrely_peak.json").write_text(
                json.dumps({"step": state.global_step, "metric": self.metric, "value": value}) + "\n", encoding="utf-8")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            log.info("ctxrely: new peak %s=%.3f at step %d saved to %s", self.metric, value or 0.0,
                     state.global_step, final)


def add_context_tracking(trainer: Any, suites: Sequence[str] | None = None, **kwargs: Any) -> ContextRelianceCallback:
    """Create a :class:`ContextRelianceCallback` and attach it to ``trainer``.

    Example:
        >>> cb = add_context_tracking(trainer, suites=["cf_capitals"], eval_every=50)  # doctest: +SKIP
    """
    kwargs.setdefault("tokenizer", getattr(trainer, "processing_class", None))
    return ContextRelianceCallback(suites, **kwargs).attach(trainer)
