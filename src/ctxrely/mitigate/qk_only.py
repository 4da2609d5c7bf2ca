"""QK-only fine-tuning (Goyal et al. 2024): train only the query and key projections.

* Separate projections (Llama, Qwen2, Mistral, Gemma, ...): ``q_proj``/``k_proj`` stay trainable,
  everything else gets ``requires_grad=False``.
* Fused QKV projections (GPT-NeoX ``query_key_value``, GPT-2 ``c_attn``, Phi-3 ``qkv_proj``): the fused
  weight (and bias) stay trainable as one tensor, and two guards keep the value part fixed:
  a gradient hook on the parameter zeroes the value rows of every gradient (so Adam moments and
  gradient clipping never see them), and a global optimizer step post-hook
  (``torch.optim.optimizer.register_optimizer_step_post_hook``) copies the saved value rows back
  after every ``step()`` of any optimizer, undoing decoupled weight decay (AdamW changes parameters
  even where the gradient is zero). Both live as long as the model (``model._ctxrely_qk_guard``;
  ``.remove()`` takes them off). The layouts are per architecture: NeoX interleaves ``[q|k|v]`` per
  head; GPT-2 is ``[q|k|v]`` along the Conv1D output columns; Phi-3 is ``[q (heads) | k | v (kv heads)]``.
* LoRA (:func:`qk_lora`): PEFT cannot put LoRA on a slice, so for fused projections LoRA goes on the
  whole fused module and the value rows of ``lora_B`` are zeroed and their gradients masked. With
  zero gradients and zero values, Adam's update and weight decay both stay zero, so the merged
  delta never touches V. DoRA is refused there (its magnitude vector would rescale V).

Example:
    >>> names = freeze_all_but_qk(model)  # full fine-tuning of Q/K only  # doctest: +SKIP
    >>> peft_model = qk_lora(model, r=8)  # LoRA on Q/K only  # doctest: +SKIP
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ctxrely.registry import MITIGATIONS

SEPARATE = (("q_proj", "k_proj"), ("query", "key"), ("wq", "wk"), ("q_lin", "k_lin"))
FUSED_NAMES = ("query_key_value", "c_attn", "qkv_proj", "Wqkv", "W_pack", "qkv")


def _v_neox(cfg: Any, out: int) -> list[bool]:
    heads = cfg.num_attention_heads
    hs = out // (3 * heads)
    return [(i % (3 * hs)) >= 2 * hs for i in range(out)]


def _v_gpt2(cfg: Any, out: int) -> list[bool]:
    return [i >= 2 * (out // 3) for i in range(out)]


def _v_phi3(cfg: Any, out: int) -> list[bool]:
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    if out != q + 2 * kv:
        raise ValueError(f"phi3 qkv_proj has {out} outputs, expected {q + 2 * kv}")
    return [i >= q + kv for i in range(out)]


# model_type -> (fused module leaf name, value-row layout)
FUSED: dict[str, tuple[str, Callable[[Any, int], list[bool]]]] = {
    "gpt_neox": ("query_key_value", _v_neox), "gpt2": ("c_attn", _v_gpt2), "phi3": ("qkv_proj", _v_phi3),
}


@dataclass
class QKModule:
    name: str
    module: Any
    v_mask: list[bool] | None  # over output features; None for a separate q/k projection
    out_dim: int  # weight dim of the output features (0 for Linear, 1 for GPT-2 Conv1D)


def qk_modules(model: Any) -> list[QKModule]:
    """The query/key projections of every layer (fused QKV modules with their value-row mask)."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    mtype = getattr(cfg, "model_type", "")
    named = list(model.named_modules())
    if mtype in FUSED:
        leaf, layout = FUSED[mtype]
        found = []
        for n, m in named:
            if n.split(".")[-1] == leaf:
                core = getattr(m, "base_layer", m)  # under PEFT, the wrapped original
                out_dim = 1 if type(core).__name__ == "Conv1D" else 0
                found.append(QKModule(n, m, layout(cfg, core.weight.shape[out_dim]), out_dim))
        return found
    for q, k in SEPARATE:
        found = [QKModule(n, m, None, 0) for n, m in named if n.split(".")[-1] in (q, k) and hasattr(m, "weight")]
        if found:
            return found
    fused = sorted({n.split(".")[-1] for n, _ in named if n.split(".")[-1] in FUSED_NAMES})
    if fused:
        raise ValueError(f"{mtype}: fused QKV projection {fused[0]!r} with a layout ctxrely does not know; "
                         f"QK-only supports fused QKV on {', '.join(FUSED)} and separate q/k projections")
    raise ValueError(f"{mtype}: found no query/key projections (looked for {SEPARATE} and {FUSED_NAMES})")


class VGuard:
    """Keeps value rows of fused QKV parameters fixed: gradient mask + restore after optimizer steps."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, Any, int, Any]] = []  # (param, value indices, dim, saved rows)
        self.handles: list[Any] = []

    def add(self, p: Any, v_mask: list[bool], dim: int) -> None:
        import torch

        mask = torch.tensor(v_mask, device=p.device)
        idx = mask.nonzero().squeeze(1)
        shape = [1] * p.ndim
        shape[dim] = -1
        keep = (~mask).to(p.dtype).view(shape)
        self.items.append((p, idx, dim, p.detach().index_select(dim, idx).clone()))
        self.handles.append(p.register_hook(lambda g, keep=keep: g * keep))

    def restore(self) -> None:
        import torch

        with torch.no_grad():
            for p, idx, dim, saved in self.items:
                p.index_copy_(dim, idx, saved)

    def install(self, model: Any) -> None:
        """Register with the process-wide optimizer post-hook and tie the guard's life to ``model``."""
        global _HOOK
        if _HOOK is None:
            from torch.optim.optimizer import register_optimizer_step_post_hook

            _HOOK = register_optimizer_step_post_hook(_restore_all)
        _GUARDS.add(self)
        model._ctxrely_qk_guard = self

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
        _GUARDS.discard(self)


# One global optimizer post-hook restores every live guard (a weak set: a guard dies with its model).
_GUARDS: weakref.WeakSet[VGuard] = weakref.WeakSet()
_HOOK: Any = None


def _restore_all(_opt: Any, _args: Any, _kwargs: Any) -> None:
    for guard in list(_GUARDS):
        guard.restore()


@MITIGATIONS.register("qk_only", description="fine-tune only query/key projections (full or LoRA); fused QKV "
                      "(GPT-NeoX, GPT-2, Phi-3) with the value part held fixed (Goyal et al. 2024)")
def freeze_all_but_qk(model: Any) -> list[str]:
    """Freeze every parameter except the query/key projections; returns the trainable parameter names.

    For fused QKV weights, the whole tensor is listed (it must be trainable) and a :class:`VGuard`
    keeps its value rows unchanged through backward passes and optimizer steps (see module docstring).
    """
    old = getattr(model, "_ctxrely_qk_guard", None)
    if old is not None:
        old.remove()
    mods = qk_modules(model)
    for p in model.parameters():
        p.requires_grad_(False)
    guard, names = VGuard(), []
    for qk in mods:
        for pname, p in qk.module.named_parameters(recurse=False):
            p.requires_grad_(True)
            names.append(f"{qk.name}.{pname}")
            if qk.v_mask is not None:
                guard.add(p, qk.v_mask, qk.out_dim if pname == "weight" else 0)
    if guard.items:
        guard.install(model)
    return names


def qk_lora_targets(model: Any) -> list[str]:
    """PEFT ``target_modules`` for QK-only LoRA: ``["q_proj", "k_proj"]``-style, or the fused module name.

    A fused target needs :func:`guard_fused_lora` after ``get_peft_model`` (or use :func:`qk_lora`).
    """
    return sorted({qk.name.split(".")[-1] for qk in qk_modules(model)})


def guard_fused_lora(peft_model: Any) -> int:
    """Zero the value rows of ``lora_B`` on fused QKV modules and mask their gradients; returns how many."""
    import torch

    base = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model
    masks = {qk.name: qk.v_mask for qk in qk_modules(base) if qk.v_mask is not None}
    n = 0
    for name, mod in base.named_modules():
        if name not in masks or not hasattr(mod, "lora_B"):
            continue
        if any(getattr(mod, "use_dora", {}).values()):
            raise ValueError("QK-only LoRA on a fused QKV projection does not support DoRA")
        mask = torch.tensor(masks[name], device=mod.lora_B[next(iter(mod.lora_B))].weight.device)
        for lin in mod.lora_B.values():
            for pname, p in lin.named_parameters(recurse=False):
                keep = (~mask).to(p.dtype).view(-1, *([1] * (p.ndim - 1)))
                with torch.no_grad():
                    p.mul_(keep)
                p.register_hook(lambda g, keep=keep: g * keep)
                n += 1 if pname == "weight" else 0
    return n


def qk_lora(model: Any, *, r: int = 8, alpha: int = 16, dropout: float = 0.0, **lora_kwargs: Any) -> Any:
    """Wrap ``model`` in PEFT LoRA on the query/key projections only (value part of fused QKV held at 0)."""
    from peft import LoraConfig, get_peft_model

    mods = qk_modules(model)
    if lora_kwargs.get("use_dora") and any(qk.v_mask is not None for qk in mods):
        raise ValueError("QK-only LoRA on a fused QKV projection does not support DoRA")
    if any(qk.out_dim == 1 for qk in mods):  # GPT-2 Conv1D stores weights transposed
        lora_kwargs.setdefault("fan_in_fan_out", True)
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=qk_lora_targets(model),
                     task_type="CAUSAL_LM", **lora_kwargs)
    pm = get_peft_model(model, cfg)
    guard_fused_lora(pm)
    return pm
