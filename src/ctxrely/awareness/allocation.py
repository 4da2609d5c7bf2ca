"""Attention allocation (Wang et al. 2024): how the answer positions split their attention over
``bos``, ``user``, ``template`` and ``assistant`` tokens, per layer and head, with and without the
chat template.

For each prompt the model first answers greedily (its own attention kernel, e.g. sdpa); then one
forward pass over prompt + answer runs with eager attention (switched on for the measurement only
and restored in a ``finally``) while a hook on every attention module reduces its weights to a
``(heads, 4)`` role mass averaged over the answer's query positions, so no full attention map is
kept. Shares per (layer, head) sum to 1. Views: the mean over layers and heads; the paper's
*retrieval head* (largest user share in the ``raw`` pass, reused in the ``chat`` pass); and the
shares renormalised without template tokens.

With ``out_dir``, every answer list and every prompt's ``(L, H, 4)`` masses are appended to
``attention.partial.jsonl`` there (under a hash of the settings) as they are computed, so an
interrupted measurement resumes where it stopped; the file goes once the summary is complete.

Example:
    >>> s = attention_allocation(model, tok, users, templates=("raw", "chat"))  # doctest: +SKIP
    >>> s["templates"]["chat"]["roles"]  # doctest: +SKIP
    {'bos': 0.61, 'user': 0.22, 'template': 0.12, 'assistant': 0.05}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ctxrely.awareness.roles import ROLES, RoleEncoding, encode_roles

log = logging.getLogger(__name__)
PARTIAL = "attention.partial.jsonl"


def role_masses(model: Any, encodings: Sequence[RoleEncoding], progress: Any = None,
                done: dict[int, Any] | None = None, on_prompt: Callable[[int, Any], None] | None = None) -> Any:
    """Mean attention share per (layer, head, role) over the prompts' query positions: ``(L, H, 4)``.

    ``done`` maps prompt indices to masses already measured (not run again); ``on_prompt(i, masses)``
    receives each newly measured prompt's ``(L, H, 4)`` masses.
    """
    import torch

    from ctxrely.models.attention import attention_layers, capture_attention

    n = len(attention_layers(model))
    device = next(model.parameters()).device
    current: dict[str, Any] = {}
    per_layer: list[Any] = [None] * n

    def reduce(layer: int, w: Any) -> None:
        rows = w[0, :, current["q"], :].float()  # heads x queries x keys
        with torch.autocast(device_type=rows.device.type, enabled=False):  # full precision inside a bf16 run
            per_layer[layer] = torch.einsum("hqk,kr->hr", rows, current["onehot"]) / len(current["q"])

    from ctxrely.engine.distributed import inference_context

    total = None
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with capture_attention(model, reduce), inference_context(model):  # no_grad under FSDP / ZeRO-3
            for i, enc in enumerate(encodings):
                if done and i in done:
                    known = torch.as_tensor(done[i], dtype=torch.float32)
                    total = known if total is None else total + known
                    if progress is not None:
                        progress.update(1)
                    continue
                idx = torch.tensor([ROLES.index(r) for r in enc.roles], device=device)
                current["onehot"] = torch.nn.functional.one_hot(idx, len(ROLES)).float()
                current["q"] = torch.tensor(enc.queries, device=device)
                ids = torch.tensor([enc.ids], device=device)
                model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
                stacked = torch.stack(per_layer).cpu().float()
                if on_prompt is not None:
                    on_prompt(i, stacked)
                total = stacked if total is None else total + stacked
                if progress is not None:
                    progress.update(1)
    finally:
        if was_training:
            model.train()
    if total is None:
        raise ValueError("no prompts to measure")
    return (total / len(encodings)).float().numpy()


def _roles(vec: Any) -> dict[str, float]:
    return {r: float(vec[i]) for i, r in enumerate(ROLES)}


def view(masses: Any, head: tuple[int, int] | None = None) -> dict[str, Any]:
    """The summary of one template's ``(L, H, 4)`` masses (optionally with a given retrieval head)."""
    mean = masses.mean(axis=(0, 1))
    keep = [ROLES.index(r) for r in ROLES if r != "template"]
    no_t = {r: 0.0 for r in ROLES}
    denom = float(mean[keep].sum())
    for i in keep:
        no_t[ROLES[i]] = float(mean[i]) / denom if denom > 0 else 0.0
    out: dict[str, Any] = {
        "roles": _roles(mean), "roles_no_template": no_t,
        "per_layer": [_roles(v) for v in masses.mean(axis=1)],
        "per_head": [[_roles(v) for v in layer] for layer in masses],
    }
    if head is not None:
        out["retrieval_head"] = {"layer": head[0], "head": head[1], "roles": _roles(masses[head[0], head[1]])}
    return out


def answers(model: Any, tokenizer: Any, users: Sequence[str], template: str, max_new_tokens: int,
            batch_size: int = 4, stop: Sequence[str] | None = None) -> list[str]:
    """The model's greedy answers to the user turns under ``template`` (one backend request per turn,
    through :func:`ctxrely.engine.backend.make_backend`; stop strings default to ``NIH_STOP``)."""
    from ctxrely.awareness.nih import encode_prompt, render_prompt
    from ctxrely.awareness.nih_run import NIH_STOP
    from ctxrely.engine.backend import Request, make_backend

    reqs = [Request(encode_prompt(tokenizer, render_prompt(tokenizer, u, template), template), (), max_new_tokens)
            for u in users]
    outs = make_backend(model, tokenizer).run(reqs, stop=list(NIH_STOP if stop is None else stop),
                                              batch_size=batch_size)
    return [o.text or "" for o in outs]


def partial_key(row: dict[str, Any]) -> tuple[str, Any]:
    """A resume row's key: ``(template, "answers")`` or ``(template, prompt index)``."""
    if "answers" in row:
        if not isinstance(row["answers"], list):
            raise TypeError("'answers' is not a list")
        return str(row["template"]), "answers"
    if not isinstance(row["masses"], list) or not isinstance(row["i"], int):
        raise TypeError("'masses' is not a list or 'i' not a number")
    return str(row["template"]), row["i"]


class _Partial:
    """The resume file (:class:`ctxrely.engine.resume.ResumeLog`): answer lists and per-prompt masses."""

    def __init__(self, out_dir: str | Path | None, fingerprint: str) -> None:
        from ctxrely.engine.resume import ResumeLog

        self.log = None if out_dir is None else ResumeLog(out_dir, fingerprint, stem="attention", key=partial_key)
        self.path = None if self.log is None else self.log.path
        self.answers: dict[str, list[str]] = {}
        self.masses: dict[str, dict[int, Any]] = {}
        if self.log is None:
            return
        for (template, what), row in self.log.load().items():  # type: ignore[misc]
            if what == "answers":
                self.answers[template] = row["answers"]
            else:
                self.masses.setdefault(template, {})[what] = row["masses"]
        self.log.start()  # the run lock; released by done() or close()

    def __enter__(self) -> _Partial:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def add(self, row: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.append([row])

    def close(self) -> None:
        if self.log is not None:
            self.log.close()

    def done(self) -> None:
        if self.log is not None:
            self.log.clear()


def attention_allocation(model: Any, tokenizer: Any, users: Sequence[str], *, templates: Sequence[str] = ("raw", "chat"),
                         max_new_tokens: int = 16, batch_size: int = 4, progress: bool = False,
                         out_dir: str | Path | None = None, settings: Any = None) -> dict[str, Any]:
    """Role shares per template (``raw`` first, so its retrieval head can be reused for ``chat``);
    ``out_dir``: resume through ``attention.partial.jsonl`` there (see the module docstring).

    ``settings`` (an :class:`~ctxrely.engine.settings.EvalSettings`) gives ``max_new_tokens`` and
    ``batch_size`` at once. The measurement is of the model as it is: a settings object with a
    decode strategy or steering (CAD / AdaCAD / PASTA) is refused with one line.
    """
    from ctxrely.engine.fingerprint import weights_fingerprint
    from ctxrely.provenance import config_hash

    if settings is not None:
        if settings.intervention is not None:
            from ctxrely.errors import ConfigError

            raise ConfigError("attention allocation measures the model's own attention: --decode/--steer do not "
                              "apply (pass plain settings)")
        max_new_tokens, batch_size = settings.max_new_tokens, settings.batch_size or batch_size
    if not users:
        raise ValueError("no prompts to measure")
    order = sorted(templates, key=lambda t: t != "raw")
    from ctxrely.engine.distributed import lockstep, world_info

    if world_info()[0] != 0:  # several processes: each measures the whole set; rank 0 alone keeps the file
        out_dir = None
    with lockstep(model, "attention"), _Partial(out_dir, config_hash({"users": list(users), "templates": order, "max_new_tokens": max_new_tokens,
                                        "model": getattr(getattr(model, "config", None), "_name_or_path", None),
                                        "weights": weights_fingerprint(model) if out_dir is not None else None})
                  ) as part:
        return _allocate(model, tokenizer, users, templates, order, max_new_tokens, batch_size, progress, part)


def _allocate(model: Any, tokenizer: Any, users: Sequence[str], templates: Sequence[str], order: list[str],
              max_new_tokens: int, batch_size: int, progress: bool, part: _Partial) -> dict[str, Any]:
    import numpy as np

    encs = {}
    for t in order:  # render and answer everything before any measurement (fails fast on a bad template)
        outs = part.answers.get(t)
        if outs is None:
            outs = answers(model, tokenizer, users, t, max_new_tokens, batch_size)
            part.add({"template": t, "answers": outs})
        encs[t] = ([encode_roles(tokenizer, u, a, t) for u, a in zip(users, outs, strict=True)], outs)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(users) * len(order), desc="attention", unit="prompt")
    result: dict[str, Any] = {}
    head = None
    try:
        for t in order:
            masses = role_masses(model, encs[t][0], bar, done=part.masses.get(t),
                                 on_prompt=lambda i, m, t=t: part.add({"template": t, "i": i, "masses": m.tolist()}))
            if t == "raw":
                flat = int(np.argmax(masses[:, :, ROLES.index("user")]))
                head = (flat // masses.shape[1], flat % masses.shape[1])
            result[t] = {**view(masses, head), "answers": encs[t][1]}
    finally:
        if bar is not None:
            bar.close()
    part.done()
    return {"templates": {t: result[t] for t in templates}, "n_examples": len(users), "roles_order": list(ROLES)}
