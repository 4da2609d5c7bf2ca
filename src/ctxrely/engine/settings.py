"""The settings of one evaluation, as one validated value: :class:`EvalSettings`.

``evaluate``, ``score_examples``, the training callback's probe, ``export_lm_eval``, ``run_nih``
and ``attention_allocation`` all take it (their old keyword arguments still work and override it).
It is validated once, when it is built: a bad value raises one :class:`~ctxrely.errors.ConfigError`
line (a bad ``decode``/``steer`` value a ``SteerError``) before any model loads.
``ctxrely.cli.options.settings_from_args`` builds it from the shared command-line flags.

Example:
    >>> s = EvalSettings(mode="both", limit=16, decode="cad", cad_alpha=0.5)
    >>> s.mode, s.limit, s.intervention.decode
    ('both', 16, 'cad')
    >>> s.replace(limit=4).limit
    4
    >>> EvalSettings(limit=0)
    Traceback (most recent call last):
    ...
    ctxrely.errors.ConfigError: --limit must be a positive number of examples per suite, got 0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ctxrely.errors import ConfigError
from ctxrely.prompts import PromptFormat, get_format

Mode = Literal["generate", "logits", "both"]
MODES = ("generate", "logits", "both")
MATCHES = ("squad", "raw")


def check_options(limit: int | None = None, max_new_tokens: int = 32, mode: str = "both",
                  batch_size: int | None = None, batch_tokens: int | None = None) -> None:
    """Refuse option values that would silently measure nothing (one-line :class:`ConfigError`)."""
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be a positive number of examples per suite, got {limit}")
    if mode != "logits" and max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1 to generate answers (mode {mode}), got {max_new_tokens}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if batch_tokens is not None and batch_tokens < 1:
        raise ConfigError(f"--batch-tokens must be >= 1, got {batch_tokens}")


def _help(text: str) -> Any:
    return {"help": text}


@dataclass(frozen=True)
class EvalSettings:
    """How to evaluate: prompt format, mode, batching, decoding and aggregation (see the module docstring)."""

    fmt: str | PromptFormat = field(default="raw", metadata=_help(
        "prompt format name (ctxrely ls) or a template with {context}/{question}"))
    mode: Mode = field(default="logits", metadata=_help(
        "generate (answer containment), logits (log p(cf) vs log p(param)) or both (one prefill serves both)"))
    limit: int | None = field(default=None, metadata=_help("first n examples of each suite"))
    max_new_tokens: int = field(default=32, metadata=_help("greedy tokens per answer"))
    batch_size: int | None = field(default=None, metadata=_help(
        "prompts per batch (alone: a fixed count; with batch_tokens: a cap)"))
    batch_tokens: int | None = field(default=None, metadata=_help(
        "padded tokens per length-sorted batch (default 8192 when batch_size is not given)"))
    stop: tuple[str, ...] | None = field(default=None, metadata=_help(
        "stop strings (None: the command's defaults, e.g. ctxrely.engine.generate.DEFAULT_STOP)"))
    match: Literal["squad", "raw"] = field(default="squad", metadata=_help("answer matching"))
    indicator: str | None = field(default=None, metadata=_help(
        "text appended to each question (indicator-token fine-tuning)"))
    n_boot: int = field(default=1000, metadata=_help("bootstrap resamples for confidence intervals (0: none)"))
    decode: str = field(default="plain", metadata=_help(
        "plain greedy, cad ((1+a) log p(y|ctx,q) - a log p(y|q)) or adacad (a = JSD per step)"))
    cad_alpha: float = field(default=1.0, metadata=_help("CAD's alpha (>= 0; 0 = plain greedy)"))
    cad_floor: float | None = field(default=None, metadata=_help("AdaCAD: lower bound on alpha_t (0..ln 2)"))
    steer: str | None = field(default=None, metadata=_help(
        "PASTA attention steering: pasta[:alpha=A,heads=FILE,target=context|user,mode=exclude|include]"))

    def __post_init__(self) -> None:
        if self.stop is not None and not isinstance(self.stop, tuple):
            if isinstance(self.stop, str):
                raise ConfigError(f"stop must be a list of strings, got the string {self.stop!r}")
            object.__setattr__(self, "stop", tuple(self.stop))
        check_options(self.limit, self.max_new_tokens, self.mode, self.batch_size, self.batch_tokens)
        if self.match not in MATCHES:
            raise ConfigError(f"unknown match {self.match!r}; choose from {', '.join(MATCHES)}")
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or self.n_boot < 0:
            raise ConfigError(f"--n-boot must be an integer >= 0, got {self.n_boot!r}")
        object.__setattr__(self, "_format", self.fmt if isinstance(self.fmt, PromptFormat) else get_format(self.fmt))
        object.__setattr__(self, "_intervention", _parse_intervention(self.decode, self.cad_alpha, self.cad_floor,
                                                                      self.steer))

    # -- derived values ---------------------------------------------------------------------------
    @property
    def prompt_format(self) -> PromptFormat:
        """``fmt`` resolved to a :class:`~ctxrely.prompts.PromptFormat`."""
        return self._format  # type: ignore[attr-defined,no-any-return]

    @property
    def intervention(self) -> Any:
        """The active :class:`ctxrely.engine.intervention.Intervention` (CAD / AdaCAD / PASTA), or None for plain."""
        return self._intervention  # type: ignore[attr-defined]

    def stop_list(self, default: Sequence[str] | None = None) -> list[str]:
        """``stop`` as a list; ``default`` (the engine's ``DEFAULT_STOP`` when None) where it is unset."""
        if self.stop is not None:
            return list(self.stop)
        if default is None:
            from ctxrely.engine.generate import DEFAULT_STOP

            default = DEFAULT_STOP
        return list(default)

    def config(self, tokenizer: Any = None) -> dict[str, Any]:
        """The settings as written into ``summary.json`` (and hashed to key a resume)."""
        pf = self.prompt_format
        out: dict[str, Any] = {
            "format": {"name": pf.name, "hash": pf.chat_hash(tokenizer), "version": pf.version},
            "mode": self.mode, "max_new_tokens": self.max_new_tokens, "batch_size": self.batch_size,
            "batch_tokens": self.batch_tokens, "stop": self.stop_list(), "match": self.match,
            "indicator": self.indicator, "limit": self.limit, "n_boot": self.n_boot,
        }
        return out

    # -- building ---------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> EvalSettings:
        """A copy with ``changes`` (validated); unknown names raise ``TypeError`` naming the near ones."""
        if not changes:
            return self
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def build(cls, settings: EvalSettings | None = None, overrides: Mapping[str, Any] | None = None) -> EvalSettings:
        """``settings`` (default: the defaults) with ``overrides`` applied; validated once.

        Example:
            >>> EvalSettings.build(EvalSettings(mode="both"), {"limit": 8}).limit
            8
        """
        changes = dict(overrides or {})
        if settings is None:
            _check_names(changes)
            return cls(**changes)
        return settings.replace(**changes)


def settings_fields() -> tuple[str, ...]:
    """The names :class:`EvalSettings` takes (the keyword overrides ``evaluate`` accepts)."""
    return tuple(f.name for f in dataclasses.fields(EvalSettings))


def _check_names(changes: Mapping[str, Any]) -> None:
    import difflib

    names = settings_fields()
    for key in changes:
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            raise TypeError(f"unknown evaluation setting {key!r}" + (f"; did you mean {near[0]!r}?" if near else ""))


def _parse_intervention(decode: str, cad_alpha: float, cad_floor: float | None, steer: Any) -> Any:
    """An active :class:`ctxrely.engine.intervention.Intervention`, or None for plain unsteered decoding."""
    if decode == "plain" and steer is None:
        from ctxrely.engine.intervention import check_cad

        check_cad(cad_alpha, cad_floor)
        return None
    from ctxrely.engine.intervention import Intervention

    return Intervention.parse(decode, cad_alpha, cad_floor, steer)
