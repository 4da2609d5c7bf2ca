"""An inference-time fix as one value: ``--decode plain|cad|adacad`` and ``--steer pasta[:...]``.

The engine runs an intervention through its HF backend with :meth:`Intervention.strategy` (a
``DecodeStrategy``: CAD / AdaCAD mix two streams, PASTA steers every model call), so answers and
answer log-probs both change; ``config()`` goes into the result's config hash. The strategies
themselves live in :mod:`ctxrely.steer` and are found through ``ctxrely.registry.DECODE_STRATEGIES``
(lazy ``"module:attr"`` entries), so the engine imports no higher layer. Formerly
``ctxrely.steer.plan`` (still importable there).

Example:
    >>> iv = Intervention.parse(decode="cad", cad_alpha=0.5, steer="pasta:alpha=0.05")
    >>> iv.config()["steer"]["alpha"], iv.config()["decode"]
    (0.05, 'cad')
    >>> Intervention.parse().active
    False
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ctxrely.data.schema import ConflictExample
from ctxrely.errors import CtxrelyError
from ctxrely.prompts import PromptFormat
from ctxrely.registry import DECODE_STRATEGIES


class SteerError(CtxrelyError):
    """Bad steering input: alpha out of range, a head that does not exist, a malformed head file."""


def check_alpha(alpha: float) -> float:
    """Alpha must be a finite number > 0 (1 = no steering)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise SteerError(f"steering alpha must be a finite number > 0 (e.g. 0.01), got {alpha!r}")
    return float(alpha)


def check_cad(alpha: float, floor: float | None = None) -> None:
    """CAD's alpha must be finite and >= 0; AdaCAD's floor in [0, ln 2]."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
        raise SteerError(f"--cad-alpha must be a finite number >= 0, got {alpha!r}")
    if floor is not None and not (isinstance(floor, (int, float)) and 0 <= floor <= math.log(2)):
        raise SteerError(f"--cad-floor must lie in [0, ln 2 = 0.693], got {floor!r}")


Decode = Literal["plain", "cad", "adacad"]
DECODES = ("plain", "cad", "adacad")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SteerSpec:
    """PASTA settings: ``pasta:alpha=0.01,heads=all|FILE,target=context|user,mode=exclude|include``."""

    alpha: float = 0.01
    heads: str | tuple[tuple[int, int], ...] = "all"  # "all", a head file, or (layer, head) pairs
    target: Literal["context", "user"] = "context"
    mode: Literal["exclude", "include"] = "exclude"

    @classmethod
    def parse(cls, text: str) -> SteerSpec:
        method, _, rest = text.partition(":")
        if method.strip() != "pasta":
            raise SteerError(f"--steer: unknown method {method!r} (known: pasta)")
        kw: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, val = (x.strip() for x in item.partition("="))
            if not sep or key not in ("alpha", "heads", "target", "mode"):
                raise SteerError(f"--steer: bad item {item!r} (expected alpha=, heads=, target= or mode=)")
            kw[key] = val
        if "alpha" in kw:
            try:
                kw["alpha"] = float(kw["alpha"])
            except ValueError:
                raise SteerError(f"--steer: alpha must be a number, got {kw['alpha']!r}") from None
        spec = cls(**kw)
        check_alpha(spec.alpha)
        if spec.target not in ("context", "user") or spec.mode not in ("exclude", "include"):
            raise SteerError("--steer: target must be context|user and mode exclude|include")
        if spec.heads != "all" and not Path(str(spec.heads)).expanduser().is_file():
            raise SteerError(f"--steer: {spec.heads}: no such head file")
        return spec

    def config(self) -> dict[str, Any]:
        heads: Any = self.heads
        if isinstance(heads, tuple):
            heads = [list(p) for p in heads]
        elif heads != "all":
            heads = hashlib.sha256(Path(heads).expanduser().read_bytes()).hexdigest()[:12]
        return {"method": "pasta", "alpha": self.alpha, "heads": heads, "target": self.target, "mode": self.mode}


@dataclass(frozen=True)
class Intervention:
    """How to decode (plain / CAD / AdaCAD) and whether to steer attention (PASTA)."""

    decode: Decode = "plain"
    cad_alpha: float = 1.0
    cad_floor: float | None = None
    steer: SteerSpec | None = None

    @classmethod
    def parse(cls, decode: str = "plain", cad_alpha: float = 1.0, cad_floor: float | None = None,
              steer: str | SteerSpec | None = None) -> Intervention:
        if decode not in DECODES:
            raise SteerError(f"--decode must be one of {', '.join(DECODES)}, got {decode!r}")
        check_cad(cad_alpha, cad_floor)
        spec = SteerSpec.parse(steer) if isinstance(steer, str) else steer
        return cls(decode, float(cad_alpha), cad_floor, spec)  # type: ignore[arg-type]

    @property
    def active(self) -> bool:
        return self.decode != "plain" or self.steer is not None

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"decode": self.decode}
        if self.decode == "cad":
            out["cad_alpha"] = self.cad_alpha
        if self.decode == "adacad":
            out["cad_floor"] = self.cad_floor
        out["steer"] = None if self.steer is None else self.steer.config()
        return out

    # -- engine entry points ------------------------------------------------------------------
    def strategy(self, tokenizer: Any, fmt: PromptFormat, suffix: str | None = None) -> Any:
        """The :class:`ctxrely.engine.backend.DecodeStrategy` that runs this intervention in the HF backend.

        ``suffix`` is the indicator text the engine appends to questions (the context-free prompt
        of CAD carries it too).
        """
        from ctxrely.engine.batching import pad_id_of

        base = None if self.steer is None else DECODE_STRATEGIES.get("pasta")(tokenizer, fmt, self.steer)
        if self.decode == "plain":
            return base
        return DECODE_STRATEGIES.get("cad")(lambda r: self.bare_ids(tokenizer, fmt, r, suffix), self.cad_alpha,
                         self.decode == "adacad", self.cad_floor, base=base, pad_id=pad_id_of(tokenizer))

    @staticmethod
    def bare_ids(tokenizer: Any, fmt: PromptFormat, request: Any, suffix: str | None = None) -> list[int]:
        """Token ids of a request's prompt without its context (the data's own no-context prompt if it
        has one). A scored prompt (one with continuations) drops trailing whitespace, as answer
        scoring moves it onto the answers; decoding feeds it as the request's forced tokens."""
        from ctxrely.engine.prompting import encode, render

        if request.example is None:
            raise ValueError("CAD needs each request's example to build its prompt without context")
        text = render(request.example, fmt, tokenizer, context="", suffix=suffix)
        return list(encode(tokenizer, text.rstrip() if request.conts else text, fmt))

    def span_tokens(self, tokenizer: Any, fmt: PromptFormat, examples: Sequence[ConflictExample],
                    prompts: Sequence[Any]) -> list[int]:
        """Steered span tokens per prompt (0: nothing to steer toward, logged); prompts are ``BuiltPrompt``s."""
        from ctxrely.engine.prompting import encode

        if self.steer is None:
            return [0] * len(prompts)
        ids = [p.ids or encode(tokenizer, p.text, fmt) for p in prompts]
        spans = DECODE_STRATEGIES.get("pasta")(tokenizer, fmt, self.steer).prompt_spans(
            examples, [p.text for p in prompts], ids)
        missing = sum(1 for sp in spans if not sp)
        if missing:
            log.warning("%d/%d prompts have no %s to steer toward; they run unsteered",
                        missing, len(spans), self.steer.target)
        return [sum(e - s for s, e in sp) for sp in spans]
