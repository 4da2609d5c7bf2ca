"""Theory sandbox: the one-layer model of Goyal et al. (2024, sec. 4), simulated in torch on a CPU.

"Context-Parametric Inversion: Why Instruction Finetuning May Not Actually Improve Context
Reliance" explains the inversion with a one-layer attention model. This module builds that model
(eqs. 2-8), fine-tunes it by full-batch gradient descent on a C / C+S / S mixture and records, at
every step, the attention scores along the invariant directions and the context reliance M_C on
held-out knowledge conflicts (Theorem 1). ``docs/theory.md`` writes the equations out and reports
what a run shows. Settings and traces live in :mod:`ctxrely.lab.theory_config`, plots in
:mod:`ctxrely.lab.theory_plots`.

Model, as implemented (x = [c, s, r], or [s, r] for a subject-only point)::

    phi(c) = theta_C + e_{a(c)} + noise      phi(s) = theta_S + u_s      phi(r) fixed
    z_y    = phi(y)^T W_KQ phi(r)             sigma = softmax_y(z)       (y over the tokens of x)
    f(x)   = sum_y sigma_y W_H^T W_V phi(y)   loss = cross-entropy(f(x), answer)
    W_V(0) = alpha sum_a h_a e_a^T + beta sum_{s pretrained} h_{a(s)} u_s^T,    W_KQ(0) = 0

Example:
    >>> from ctxrely.lab.theory import TheoryConfig, run_experiments, simulate
    >>> trace = simulate(TheoryConfig(steps=50))
    >>> len(trace.m_c)
    51
    >>> traces = run_experiments(TheoryConfig())                           # doctest: +SKIP
    >>> {k: round(t.summary()["drop"], 3) for k, t in traces.items()}     # doctest: +SKIP
    {'baseline': 0.239, 'no_ccs': 0.0, 'more_subject_only': 0.218}
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctxrely.errors import ConfigError
from ctxrely.lab.theory_config import SETTINGS, THEORY_VERSION, TheoryConfig, TheoryTrace

if TYPE_CHECKING:
    import torch

__all__ = [
    "SETTINGS",
    "TheoryConfig",
    "TheoryTrace",
    "load_traces",
    "plot_theory",
    "run_experiments",
    "save_traces",
    "simulate",
]

# --------------------------------------------------------------------------------------------------
# the world: embeddings, facts, pretrained weights


def _embeddings(cfg: TheoryConfig, m: int, dtype: torch.dtype) -> torch.Tensor:
    """m unit vectors in R^d: exactly orthonormal (QR of a d x d Gaussian; needs m <= d) or, with
    ``embeddings="random"``, independent random unit vectors (near-orthogonal, with cross-talk)."""
    import torch

    g = torch.Generator().manual_seed(cfg.seed)
    if cfg.embeddings == "orthogonal":
        if m > cfg.d:
            raise ConfigError(f"d={cfg.d} is too small for {m} orthogonal embeddings; raise d, lower "
                              f"n_pretrained / n_subjects, or set embeddings='random'")
        q, _ = torch.linalg.qr(torch.randn(cfg.d, cfg.d, generator=g, dtype=dtype))
        return q.T[:m].contiguous()
    v = torch.randn(m, cfg.d, generator=g, dtype=dtype)
    return v / v.norm(dim=-1, keepdim=True)


def _build(cfg: TheoryConfig) -> dict[str, Any]:
    """Embeddings, pretrained W_V, fine-tuning batch and held-out conflict batch for ``cfg``.

    The pretrained world (embeddings, facts, W_V) depends only on seed, d, n_answers, n_pretrained,
    the mixture shares, n_eval and the two strengths, never on the setting flags, so every setting
    fine-tunes the same pretrained model; C, C+S and eval points are the same across settings and
    ``subject_only_multiplier`` only appends S points.
    """
    import torch

    dt = torch.float64 if cfg.dtype == "float64" else torch.float32
    k, n = cfg.n_answers, cfg.counts()
    n_c, n_cs_base = cfg.base_counts()["C"], cfg.base_counts()["C+S"]
    pool = cfg.n_pretrained
    if n_cs_base + cfg.n_eval + n["S"] > pool:
        raise ConfigError(f"n_pretrained={pool} < C+S + eval + S subjects "
                          f"({n_cs_base} + {cfg.n_eval} + {n['S']}); raise n_pretrained")
    # slots: theta_C, theta_S, phi(r) | e_a (K) | h_a (K) | pretrained pool | new subjects
    V = _embeddings(cfg, 3 + 2 * k + pool + n_c, dt)
    theta_c, theta_s, phi_r = V[0], V[1], V[2]
    E = V[3:3 + k]                          # answer content written in a context
    W_H = V[3 + k:3 + 2 * k].T.contiguous()  # d x K unembedding, column h_a
    U_pool = V[3 + 2 * k:3 + 2 * k + pool]  # memorised in pretraining
    U_new = V[3 + 2 * k + pool:]            # unseen in pretraining (the C points' subjects)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    a_pool = torch.randint(k, (pool,), generator=g)
    a_new = torch.randint(k, (n_c,), generator=g)
    a_conf = (a_pool + torch.randint(1, k, (pool,), generator=g)) % k  # a conflicting answer

    # pretrained value: copy the answer written in a context (alpha), recall memorised facts (beta)
    W_V = cfg.context_strength * W_H @ E + cfg.memory_strength * W_H[:, a_pool] @ U_pool

    noise_g = torch.Generator().manual_seed(cfg.seed + 2)
    ctx_noise = torch.randn(3 * pool + n_c, cfg.d, generator=noise_g, dtype=dt)
    ctx_noise = cfg.context_noise * ctx_noise / ctx_noise.norm(dim=-1, keepdim=True)

    def seqs(u: torch.Tensor, a: torch.Tensor | None, noise: torch.Tensor) -> torch.Tensor:
        c = torch.zeros_like(u) if a is None else theta_c + E[a] + noise
        return torch.stack([c, theta_s + u, phi_r.expand_as(u)], dim=1)

    cs = slice(0, n["C+S"])
    ev = slice(n_cs_base, n_cs_base + cfg.n_eval)
    so = slice(n_cs_base + cfg.n_eval, n_cs_base + cfg.n_eval + n["S"])
    X = torch.cat([seqs(U_new, a_new, ctx_noise[:n_c]),
                   seqs(U_pool[cs], a_pool[cs], ctx_noise[n_c:][cs]),
                   seqs(U_pool[so], None, ctx_noise[:0])])
    mask = torch.ones(X.shape[:2], dtype=torch.bool)
    mask[n_c + n["C+S"]:, 0] = False  # subject-only points have no context token
    y = torch.cat([a_new, a_pool[cs], a_pool[so]])
    X_eval = seqs(U_pool[ev], a_conf[ev], ctx_noise[n_c + pool:][ev])
    return {"theta_c": theta_c, "theta_s": theta_s, "phi_r": phi_r, "W_H": W_H, "W_V": W_V,
            "X": X, "mask": mask, "y": y, "X_eval": X_eval, "a_ctx": a_conf[ev], "a_par": a_pool[ev],
            "E": E, "U_new": U_new, "a_new": a_new, "counts": n}


def _forward(X: torch.Tensor, mask: torch.Tensor, W_KQ: torch.Tensor, head: torch.Tensor,
             phi_r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4: logits = sum_y softmax_y(phi(y)^T W_KQ phi(r)) W_H^T W_V phi(y), with
    ``head = W_V^T W_H`` (d x K). Returns (logits, sigma)."""
    import torch

    z = (X @ (W_KQ @ phi_r)).masked_fill(~mask, float("-inf"))
    sigma = torch.softmax(z, dim=-1)                 # n x T, attention from the relation token
    values = X @ head                                # n x T x K, W_H^T W_V phi(y) per token
    return (sigma.unsqueeze(-1) * values).sum(dim=1), sigma


# --------------------------------------------------------------------------------------------------
# simulation


def simulate(cfg: TheoryConfig, name: str = "custom") -> TheoryTrace:
    """Fine-tune the one-layer model on ``cfg``'s mixture by full-batch gradient descent.

    Runs single-threaded (the tensors are tiny; extra threads only contend on a shared CPU) and
    restores torch's thread count afterwards.

    Args:
        cfg: the configuration (world, mixture, optimiser).
        name: label stored in the trace.

    Returns:
        A :class:`TheoryTrace` with one entry per logged step (step 0 is the pretrained model).

    Example:
        >>> t = simulate(TheoryConfig(steps=20, log_every=10))
        >>> t.step
        [0, 10, 20]
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _simulate(cfg, name)
    finally:
        torch.set_num_threads(threads)


def _value_readings(W_V: torch.Tensor, W_H: torch.Tensor, w: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """(mean_a h_a^T W_V e_a, mean over C points of h_a^T W_V u_s): copy strength, C-fact memory."""
    copy = (W_H.T @ W_V @ w["E"].T).diagonal().mean()
    memo = (W_H[:, w["a_new"]] * (W_V @ w["U_new"].T)).sum(0).mean() if len(w["a_new"]) else copy * 0
    return copy, memo


def _simulate(cfg: TheoryConfig, name: str) -> TheoryTrace:
    import torch
    import torch.nn.functional as F

    w = _build(cfg)
    W_KQ = torch.zeros(cfg.d, cfg.d, dtype=w["W_V"].dtype, requires_grad=True)
    W_V = w["W_V"].clone().requires_grad_(cfg.train_value)
    params = [W_KQ, W_V] if cfg.train_value else [W_KQ]
    lrs = [cfg.lr, cfg.lr if cfg.lr_value is None else cfg.lr_value][: len(params)]
    W_H, phi_r, X, mask, y = w["W_H"], w["phi_r"], w["X"], w["mask"], w["y"]
    eval_mask = torch.ones(w["X_eval"].shape[:2], dtype=torch.bool)
    idx = torch.arange(cfg.n_eval)
    norm = cfg.n_subjects if cfg.loss_reduction == "sum" else len(y)
    logged: list[int] = []
    rows: list[torch.Tensor] = []

    head = (W_V.T @ W_H).contiguous()  # recomputed each step only when W_V trains
    for t in range(cfg.steps + 1):
        if cfg.train_value:
            head = W_V.T @ W_H
        logits, _ = _forward(X, mask, W_KQ, head, phi_r)
        loss = F.cross_entropy(logits, y, reduction="sum") / norm  # eq. 5
        if t % cfg.log_every == 0 or t == cfg.steps:
            with torch.no_grad():
                le, sig = _forward(w["X_eval"], eval_mask, W_KQ, head, phi_r)
                p = torch.softmax(le, dim=-1)
                pc, pp = p[idx, w["a_ctx"]], p[idx, w["a_par"]]
                q = W_KQ @ phi_r
                logged.append(t)
                if cfg.train_value or t == 0:
                    copy, memo = _value_readings(W_V.detach(), W_H, w)
                rows.append(torch.stack([w["theta_c"] @ q, w["theta_s"] @ q, sig[:, 0].mean(),
                                         sig[:, 1].mean(), (pc / (pc + pp)).mean(), loss.detach(),
                                         copy, memo]))
        if t == cfg.steps:
            break
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p_, g_, lr in zip(params, grads, lrs, strict=True):
                p_.sub_(lr * g_)
    cols = torch.stack(rows).T.tolist()
    if not all(math.isfinite(v) for v in cols[-1]):
        raise ConfigError(f"the loss diverged; lower lr (now {cfg.lr})")
    return TheoryTrace(name=name, config=asdict(cfg), counts=w["counts"], step=logged,
                       attn_context=cols[0], attn_subject=cols[1], p_context=cols[2], p_subject=cols[3],
                       m_c=cols[4], loss=cols[5], copy_strength=cols[6], c_fact_memory=cols[7])


def run_experiments(cfg: TheoryConfig | None = None,
                    settings: list[str] | None = None) -> dict[str, TheoryTrace]:
    """Simulate each named setting of :data:`SETTINGS` on top of ``cfg``.

    Args:
        cfg: base configuration (default :class:`TheoryConfig()`).
        settings: names from :data:`SETTINGS` (default: all of them).

    Returns:
        ``{setting name: trace}`` in the order asked.
    """
    cfg = cfg or TheoryConfig()
    names = settings or list(SETTINGS)
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        raise ConfigError(f"unknown theory settings {unknown}; known: {list(SETTINGS)}")
    return {s: simulate(dataclasses.replace(cfg, **SETTINGS[s][1]), name=s) for s in names}


def save_traces(traces: dict[str, TheoryTrace], path: str | Path) -> Path:
    """Write ``{"version", "settings", "traces"}`` as JSON (``theory.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": THEORY_VERSION,
           "settings": {k: SETTINGS[k][0] for k in traces if k in SETTINGS},
           "summary": {k: t.summary() for k, t in traces.items()},
           "traces": {k: t.to_dict() for k, t in traces.items()}}
    path.write_text(json.dumps(doc, indent=1))
    return path


def load_traces(path: str | Path) -> dict[str, TheoryTrace]:
    """Read traces written by :func:`save_traces`."""
    doc = json.loads(Path(path).read_text())
    return {k: TheoryTrace.from_dict(v) for k, v in doc["traces"].items()}


def plot_theory(traces: dict[str, TheoryTrace], out_dir: str | Path) -> list[Path]:
    """Two-panel figure (attention scores, M_C vs step); see :mod:`ctxrely.lab.theory_plots`."""
    from ctxrely.lab.theory_plots import plot_theory as _plot

    return _plot(traces, out_dir)
