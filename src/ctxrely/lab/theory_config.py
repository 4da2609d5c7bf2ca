"""The theory sandbox's settings and results: :class:`TheoryConfig` (every knob, with its help text,
loaded through :mod:`ctxrely.config`), :class:`TheoryTrace` (what a simulated run records) and the
named :data:`SETTINGS` compared by :func:`ctxrely.lab.theory.run_experiments`. No torch here.

Example:
    >>> TheoryConfig.from_dict({"steps": 50}).steps
    50
    >>> sorted(SETTINGS)
    ['baseline', 'more_subject_only', 'no_ccs']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ctxrely.errors import ConfigError

THEORY_VERSION = "1"


@dataclass
class TheoryConfig:
    """Every knob of the simulation; the defaults reproduce ``docs/theory.md``."""

    d: int = field(default=256, metadata={"help": "embedding dimension; orthogonal embeddings need "
                                                  "d >= 3 + 2 n_answers + n_pretrained + #C points"})
    n_answers: int = field(default=8, metadata={"help": "size of the answer vocabulary (columns of W_H)"})
    n_subjects: int = field(default=96, metadata={"help": "fine-tuning subjects, one example each, in the "
                                                           "baseline mixture; split into C / C+S / S by "
                                                           "the shares below"})
    share_context_critical: float = field(default=0.25, metadata={
        "help": "share of C points: a new subject (nothing memorised), the context gives the answer"})
    share_non_context_critical: float = field(default=0.5, metadata={
        "help": "share of C+S points: a pretrained subject whose context repeats its memorised answer"})
    share_subject_only: float = field(default=0.25, metadata={
        "help": "share of S points: a pretrained subject, no context, answer = memorised answer"})
    remove_non_context_critical: bool = field(default=False, metadata={
        "help": "drop the C+S points from the mixture (C and S counts unchanged)"})
    subject_only_multiplier: float = field(default=1.0, metadata={
        "help": "multiply the number of S points (new S subjects are added; C and C+S unchanged)"})
    n_pretrained: int = field(default=192, metadata={
        "help": "subjects memorised in pretraining: the pool the C+S, S and eval subjects come from"})
    embeddings: Literal["orthogonal", "random"] = field(default="orthogonal", metadata={
        "help": "'orthogonal': all token/answer vectors exactly orthonormal (needs d >= their count); "
                "'random': independent random unit vectors (superposition cross-talk)"})
    n_eval: int = field(default=32, metadata={"help": "held-out conflict examples: a pretrained subject not "
                                                       "seen in fine-tuning, a context with another answer"})
    context_strength: float = field(default=2.5, metadata={
        "help": "alpha: answer logit the pretrained W_V gives when attending only to a context (copying)"})
    memory_strength: float = field(default=4.0, metadata={
        "help": "beta: answer logit the pretrained W_V gives when attending only to a pretrained subject"})
    context_noise: float = field(default=0.0, metadata={
        "help": "norm of a random idiosyncratic vector added to every context embedding"})
    loss_reduction: Literal["sum", "mean"] = field(default="sum", metadata={
        "help": "'sum': eq. 5 summed over the points and divided by the baseline size n_subjects, so "
                "a setting that adds or removes points adds or removes their gradient and leaves the "
                "others' weight alone; 'mean': divided by the setting's own size (adding S points then "
                "also dilutes the C and C+S points); identical for the baseline"})
    steps: int = field(default=400, metadata={"help": "full-batch gradient-descent steps"})
    lr: float = field(default=1.0, metadata={"help": "learning rate of W_KQ"})
    train_value: bool = field(default=False, metadata={
        "help": "also train W_V (Proposition 3); otherwise only W_KQ moves (Proposition 1)"})
    lr_value: float | None = field(default=None, metadata={"help": "learning rate of W_V (default: lr)"})
    seed: int = field(default=0, metadata={"help": "seed of embeddings, facts and data"})
    dtype: Literal["float64", "float32"] = field(default="float64", metadata={"help": "torch dtype"})
    log_every: int = field(default=1, metadata={"help": "record the trace every N steps (and the last)"})

    def __post_init__(self) -> None:
        shares = (self.share_context_critical, self.share_non_context_critical, self.share_subject_only)
        if min(shares) < 0 or abs(sum(shares) - 1.0) > 1e-6:
            raise ConfigError(f"mixture shares must be >= 0 and sum to 1, got {shares}")
        for name in ("d", "n_subjects", "n_eval", "steps", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_answers < 2:
            raise ConfigError(f"n_answers must be >= 2, got {self.n_answers}")
        if self.subject_only_multiplier < 0:
            raise ConfigError(f"subject_only_multiplier must be >= 0, got {self.subject_only_multiplier}")
        if self.embeddings not in ("orthogonal", "random"):
            raise ConfigError(f"embeddings must be 'orthogonal' or 'random', got {self.embeddings!r}")
        if self.loss_reduction not in ("sum", "mean"):
            raise ConfigError(f"loss_reduction must be 'sum' or 'mean', got {self.loss_reduction!r}")
        if self.dtype not in ("float64", "float32"):
            raise ConfigError(f"dtype must be 'float64' or 'float32', got {self.dtype!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TheoryConfig:
        """Build from a dict through the one config loader (unknown keys and wrong types raise)."""
        from ctxrely import config

        return config.from_dict(cls, d, "theory config")

    def base_counts(self) -> dict[str, int]:
        """C, C+S and S counts of the baseline mixture (shares x n_subjects)."""
        n_c = round(self.n_subjects * self.share_context_critical)
        n_cs = round(self.n_subjects * self.share_non_context_critical)
        return {"C": n_c, "C+S": n_cs, "S": max(0, self.n_subjects - n_c - n_cs)}

    def counts(self) -> dict[str, int]:
        """C, C+S and S counts this config trains on (the base counts after the setting flags)."""
        n = self.base_counts()
        return {"C": n["C"], "C+S": 0 if self.remove_non_context_critical else n["C+S"],
                "S": round(n["S"] * self.subject_only_multiplier)}


@dataclass
class TheoryTrace:
    """Per-step record of one simulated fine-tuning run.

    ``attn_context`` / ``attn_subject`` are theta_C^T W_KQ phi(r) and theta_S^T W_KQ phi(r);
    ``p_context`` / ``p_subject`` the mean softmax weight on the context / subject token of the
    held-out conflict examples; ``m_c`` the mean of p(ctx answer) / (p(ctx answer) + p(memorised
    answer)) over them; ``loss`` the fine-tuning loss before the step. Two readings of W_V (they
    move only with ``train_value``): ``copy_strength`` = mean_a h_a^T W_V e_a (alpha at step 0) and
    ``c_fact_memory`` = mean over C points of h_a^T W_V u_s (0 at step 0: the C facts are new).
    """

    name: str
    config: dict[str, Any]
    counts: dict[str, int]
    step: list[int] = field(default_factory=list)
    attn_context: list[float] = field(default_factory=list)
    attn_subject: list[float] = field(default_factory=list)
    p_context: list[float] = field(default_factory=list)
    p_subject: list[float] = field(default_factory=list)
    m_c: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    copy_strength: list[float] = field(default_factory=list)
    c_fact_memory: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        """Start, peak (and its step), final M_C, and drop = peak - final."""
        i = max(range(len(self.m_c)), key=self.m_c.__getitem__)
        return {"start_m_c": self.m_c[0], "peak_m_c": self.m_c[i], "peak_step": self.step[i],
                "final_m_c": self.m_c[-1], "drop": self.m_c[i] - self.m_c[-1],
                "final_attn_context": self.attn_context[-1], "final_attn_subject": self.attn_subject[-1]}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TheoryTrace:
        return cls(**d)


# name -> (description, TheoryConfig overrides applied on top of the user's config)
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "baseline": ("C + C+S + S mixture", {}),
    "no_ccs": ("non-context-critical (C+S) points removed", {"remove_non_context_critical": True}),
    "more_subject_only": ("4x the subject-only (S) points", {"subject_only_multiplier": 4.0}),
}
