"""An inference-time fix as one value: ``--decode plain|cad|adacad`` and ``--steer pasta[:...]``.

The engine hands prompts to :meth:`Intervention.generate` / :meth:`Intervention.score` instead of
its plain loops when an intervention is set; ``config()`` goes into the result's config hash.

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
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ctxrely.data.schema import ConflictExample
from ctxrely.prompts import PromptFormat
from ctxrely.steer.attention import check_alpha, steer_attention
from ctxrely.steer.cad import cad_generate, check_cad, score_full
from ctxrely.steer.heads import SteerError

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
    def _scope(self, model: Any, tokenizer: Any, examples: Sequence[ConflictExample], texts: Sequence[str],
               ids: Sequence[Sequence[int]], fmt: PromptFormat, conts: Sequence[Sequence[Sequence[int]]] | None = None,
               ) -> tuple[Any, list[int]]:
        """The steering context (or a null one) with every prompt (and prompt + continuation) registered."""
        if self.steer is None:
            return nullcontext(), []
        from ctxrely.steer.spans import prompt_spans

        spans = prompt_spans(examples, texts, ids, fmt, tokenizer, self.steer.target)
        scope = steer_attention(model, alpha=self.steer.alpha, heads=self.steer.heads, mode=self.steer.mode)
        st = scope.__enter__()
        for i, (p, sp) in enumerate(zip(ids, spans, strict=True)):
            st.add(p, sp)
            for c in (conts[i] if conts is not None else ()):
                st.add(list(p) + list(c), sp)
        missing = [i for i, sp in enumerate(spans) if not sp]
        if missing:
            log.warning("%d/%d prompts have no %s to steer toward; they run unsteered",
                        len(missing), len(spans), self.steer.target)
        return scope, [len(sp) and sp[0][1] - sp[0][0] for sp in spans]

    def bare_ids(self, tokenizer: Any, examples: Sequence[ConflictExample], fmt: PromptFormat,
                 suffix: str | None = None, strip: bool = False) -> list[list[int]]:
        """Token ids of every prompt without its context (the data's own no-context prompt if it has
        one); ``strip`` drops trailing whitespace, as answer scoring moves it onto the answer."""
        from ctxrely.engine.prompting import render

        texts = [render(ex, fmt, tokenizer, context="", suffix=suffix) for ex in examples]
        texts = [t.rstrip() for t in texts] if strip else texts
        return [list(x) for x in tokenizer(texts, add_special_tokens=not fmt.chat)["input_ids"]] if texts else []

    def generate(self, model: Any, tokenizer: Any, examples: Sequence[ConflictExample], texts: Sequence[str],
                 ids: Sequence[Sequence[int]], fmt: PromptFormat, *, max_new_tokens: int, stop: Sequence[str],
                 batch_size: int, on_batch: Callable[[int], None] | None = None, suffix: str | None = None,
                 ) -> tuple[list[str], list[int]]:
        """Outputs per prompt, and the number of steered span tokens per prompt (0: nothing to steer)."""
        from ctxrely.engine.generate import greedy_generate

        scope, span_len = self._scope(model, tokenizer, examples, texts, ids, fmt)
        try:
            if self.decode == "plain":
                outs = greedy_generate(model, tokenizer, ids, max_new_tokens=max_new_tokens, stop=stop,
                                       batch_size=batch_size, on_batch=on_batch)
            else:
                outs = cad_generate(model, tokenizer, ids, self.bare_ids(tokenizer, examples, fmt, suffix),
                                    alpha=self.cad_alpha, adaptive=self.decode == "adacad", floor=self.cad_floor,
                                    max_new_tokens=max_new_tokens, stop=stop, batch_size=batch_size,
                                    on_batch=on_batch)
        finally:
            scope.__exit__(None, None, None)
        return outs, span_len

    def score(self, model: Any, tokenizer: Any, examples: Sequence[ConflictExample], texts: Sequence[str],
              prompt_ids: Sequence[Sequence[int]], conts: Sequence[Sequence[Sequence[int]]], fmt: PromptFormat, *,
              batch_size: int, on_batch: Callable[[int], None] | None = None, suffix: str | None = None) -> Any:
        """Answer log-probs (``ContScore`` lists) under the intervention. ``texts`` are the full prompts;
        ``prompt_ids``/``conts`` come from :func:`ctxrely.engine.logits.encode_pairs` (trailing
        prompt whitespace moved onto the answers, so the ids are those of ``text.rstrip()``)."""
        heads = [t.rstrip() for t in texts]
        scope, _ = self._scope(model, tokenizer, examples, heads, prompt_ids, fmt, conts)
        try:
            bare = None
            if self.decode != "plain":
                bare = self.bare_ids(tokenizer, examples, fmt, suffix, strip=True)
            return score_full(model, tokenizer, prompt_ids, conts, bare, alpha=self.cad_alpha,
                              adaptive=self.decode == "adacad", floor=self.cad_floor, batch_size=batch_size,
                              on_batch=on_batch)
        finally:
            scope.__exit__(None, None, None)
