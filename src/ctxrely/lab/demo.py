"""The demo pipeline behind ``make demo`` / ``ctxrely demo``: the whole story in one command, on a CPU.

1. **Theory sandbox**: the one-layer model of Goyal et al. (2024) fine-tuned on a C / C+S / S
   mixture; attention to context and M_C rise, then fall, and do not fall without C+S points.
2. **Step-0 knowledge-conflict eval** of a real pretrained LM (SmolLM2-135M-Instruct) on the built-in
   suites: how often it answers from memory when the context says otherwise; then the graded
   conflicts (``graded_years``, ``graded_numbers``): adoption of a wrong passage by perturbation
   degree and by the model's prior confidence (ClashEval's two curves).
3. **The short lab preset**: LoRA fine-tuning of the same model on a C / C+S / S mixture built from
   the facts it knows, tracked by the callback, baseline beside the ``no_ccs`` mitigation.

Everything goes through the package's ordinary pieces (``evaluate``, ``run_lab`` -> ``run_train`` ->
``ContextRelianceCallback``, ``build_report``); the demo only chooses small settings. One HTML
report holds the three parts. ``quick=True`` swaps the real model for a tiny random one (no
download, about a minute; its numbers mean nothing) and is what the test suite runs. Every stage
is cached in the output folder, so an interrupted demo resumes.

Example:
    >>> report = run_demo(DemoConfig(quick=True, out="runs/demo-quick"))  # doctest: +SKIP
    >>> report.name  # doctest: +SKIP
    'report.html'
"""

from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUITES = ("cf_capitals", "cf_world_facts", "cf_bio", "cf_quotes")


@dataclass
class DemoConfig:
    """Settings of one demo run (defaults: the full demo, about 10 minutes on 2 CPU cores)."""

    quick: bool = field(default=False, metadata={"help": "tiny random model, tiny settings, no download"})
    out: str = field(default="runs/demo", metadata={"help": "output folder (reruns resume in it)"})
    model: str = field(default="smollm2-135m-instruct", metadata={"help": "model of parts 2 and 3"})
    eval_limit: int = field(default=12, metadata={"help": "step-0 eval: first n items of each suite"})
    eval_mode: str = field(default="both", metadata={"help": "step-0 eval mode: logits, generate or both"})
    theory_steps: int = field(default=300, metadata={"help": "gradient steps of the theory sandbox"})
    lab_preset: str = field(default="short", metadata={"help": "lab preset of part 3"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, ..."})
    awareness: bool = field(default=True, metadata={"help": "NIH, SQuAD and attention allocation, raw vs chat"})
    graded_limit: int = field(default=30, metadata={"help": "graded conflicts (adoption curves): first n passages "
                                                             "of graded_years and graded_numbers (0: skip)"})
    progress: bool = field(default=True, metadata={"help": "progress bars"})

    def __post_init__(self) -> None:
        if self.quick:
            self.model, self.eval_limit, self.theory_steps, self.lab_preset = "tiny", 8, 120, "quick"
            self.graded_limit = min(self.graded_limit, 10)


class _Stages:
    """Prints a rule and the elapsed time per stage (rich)."""

    def __init__(self, enabled: bool) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, quiet=not enabled)
        self.t0 = time.perf_counter()
        self.times: dict[str, float] = {}

    def start(self, name: str) -> float:
        self.console.rule(f"[bold]{name}")
        return time.perf_counter()

    def done(self, name: str, t: float) -> None:
        self.times[name] = time.perf_counter() - t
        self.console.print(f"[green]done[/] {name} in {self.times[name]:.0f} s "
                           f"(total {time.perf_counter() - self.t0:.0f} s)")

    def say(self, msg: str) -> None:
        self.console.print(msg, highlight=False, soft_wrap=True)


def img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def run_theory(out: Path, steps: int) -> tuple[dict[str, Any], list[Path]]:
    """Simulate the theory settings (cached in ``out/theory.json``) and plot them."""
    from ctxrely.engine.resume import cached_json
    from ctxrely.lab.theory import TheoryConfig, load_traces, plot_theory, run_experiments, save_traces

    def fits(doc: Any) -> bool:  # a whole cache of this many steps (a damaged one is kept aside)
        try:
            return next(iter(doc["traces"].values()))["config"].get("steps") == steps
        except (TypeError, KeyError, AttributeError, StopIteration):
            return False

    path = out / "theory.json"
    cached_json(path, lambda: json.loads(save_traces(run_experiments(TheoryConfig(steps=steps)), path).read_text()),
                fits)
    traces = load_traces(path)
    return {k: t.summary() for k, t in traces.items()}, plot_theory(traces, out)


def theory_html(summary: dict[str, Any], plots: list[Path]) -> str:
    """Plots and start/peak/final M_C of each simulated setting."""
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{s['start_m_c']:.3f}</td><td>{s['peak_m_c']:.3f}</td>"
        f"<td>{s['peak_step']}</td><td>{s['final_m_c']:.3f}</td><td>{s['drop']:.3f}</td></tr>"
        for k, s in summary.items())
    imgs = "".join(f"<figure>{img_tag(p, p.stem)}</figure>" for p in plots if p.suffix == ".png")
    return ("<p>The one-layer attention model of Goyal et al. (2024, sec. 4), fine-tuned by gradient descent on "
            "context-critical (C), non-context-critical (C+S) and subject-only (S) points. Attention to the "
            "context rises first (C points), then the subject takes over (C+S points) and context reliance "
            "M_C on held-out conflicts falls; without C+S points it does not fall. See docs/theory.md.</p>"
            + imgs + "<table><thead><tr><th>setting</th><th>M_C start</th><th>peak</th><th>step of peak</th>"
            "<th>final</th><th>drop</th></tr></thead><tbody>" + rows + "</tbody></table>")


def eval_html(result: Any, model: str, fmt: str, n_examples: int = 6) -> str:
    """The step-0 table (per suite) and a few items answered from memory."""
    metrics = result.summary["metrics"]
    keys = [("n", "n"), ("cf_acc", "context answer (gen)"), ("param_acc", "memory answer (gen)"),
            ("logit_cf_rate", "p(context) > p(memory)"), ("m_c", "M_C")]
    head = "".join(f"<th>{html.escape(lab)}</th>" for _, lab in [("suite", "suite"), *keys])
    body = []
    for suite, agg in metrics.items():
        cells = []
        for k, _ in keys:
            v = agg.get(k)
            v = v.get("mean") if isinstance(v, dict) else v
            cells.append("&ndash;" if v is None else (str(v) if isinstance(v, int) else f"{v:.3f}"))
        body.append(f"<tr><td>{html.escape(suite)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    mem = [r for r in result.rows if r.get("bucket") == "param_only"][:n_examples]
    ex = "".join(f"<tr><td>{html.escape(r['suite'])}</td><td>{html.escape(r['cf_answer'])}</td>"
                 f"<td>{html.escape(str(r['param_answer']))}</td><td>{html.escape(r.get('output') or '')}</td></tr>"
                 for r in mem)
    ex_table = ("<p>Some items answered from memory against the context:</p><table><thead><tr><th>suite</th>"
                "<th>context says</th><th>memory says</th><th>model output</th></tr></thead><tbody>" + ex
                + "</tbody></table>") if mem else ""
    return (f"<p>{html.escape(model)} before any fine-tuning, prompt format <code>{html.escape(fmt)}</code>, "
            f"the first {result.summary['config'].get('limit')} items of each built-in suite. Every context "
            "contradicts a fact the model may have memorised; 'context answer' is the share of generated answers "
            "that contain the context's answer, 'memory answer' the share that contain the real-world one.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{ex_table}")


MEASURED = "measured/long_reduced.json"


def measured_html(live: dict[str, Any] | None = None) -> str | None:
    """The shipped table measured on the long preset (``ctxrely lab-table --json``, see docs/findings.md),
    labelled with where, when and by which commit it was measured; None if this install lacks it."""
    from importlib import resources

    from ctxrely.lab.table_md import html as table_html

    path = resources.files("ctxrely.lab").joinpath(MEASURED)
    if not path.is_file():
        return None
    table = json.loads(path.read_text(encoding="utf-8"))
    zs = [(r["variant"], r["z"]) for r in (live or {}).get("runs") or [] if r.get("z") is not None]
    live_text = ("The short live run above takes minutes on a CPU; "
                 + (f"its drops ({html.escape(', '.join(f'{v} z = {z:.1f}' for v, z in zs))}; z = drop / paired "
                    "SE) are " + ("within noise: about 2 is what picking the peak of a few noisy evaluations gives "
                                  "by itself" if max(z for _, z in zs) < 2.5 else "partly clear of noise")
                    if zs else "its drop has no paired SE to read it by") + ". ")
    return ("<p><strong>Not run by this demo.</strong> Measured earlier with <code>ctxrely lab --preset long</code> "
            "(reduced for a 2-core CPU; <code>make lab-long-reduced</code> reruns it) and <code>ctxrely lab-table</code>; <code>make lab-long</code> runs the full "
            "preset. " + live_text + "This table is the evidence for the inversion and the mitigations.</p>"
            + table_html(table, caption=str(table.get("note") or "")))


def run_demo(cfg: DemoConfig) -> Path:
    """Run the three parts and build the one report; returns the report's path."""
    from ctxrely.engine.api import evaluate
    from ctxrely.engine.result import EvalResult
    from ctxrely.lab.closed_book import lab_format
    from ctxrely.lab.presets import get_preset
    from ctxrely.lab.runner import build_lab_report, resolve_model, run_lab
    from ctxrely.models.load import load_model

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    st = _Stages(cfg.progress)
    preset = get_preset(cfg.lab_preset, device=cfg.device, **({} if cfg.quick else {"model": cfg.model}))

    t = st.start("1/3 theory sandbox: the one-layer model of the paper")
    theory, plots = run_theory(out / "theory", cfg.theory_steps)
    for k, s in theory.items():
        st.say(f"  {k}: M_C {s['start_m_c']:.2f} -> peak {s['peak_m_c']:.2f} (step {s['peak_step']}) "
               f"-> final {s['final_m_c']:.2f}")
    st.done("theory", t)

    t = st.start(f"2/3 step-0 knowledge-conflict eval of {cfg.model}")
    lab_out = out / "lab"
    model, tok = load_model(resolve_model(preset, lab_out) if cfg.quick else cfg.model, device=cfg.device)
    fmt = lab_format(tok).name
    eval_dir = out / "eval-step0"
    if (eval_dir / "summary.json").exists() and (eval_dir / "examples.jsonl").exists():
        result = EvalResult.load(eval_dir)
    else:
        result = evaluate(model, tok, list(SUITES), fmt=fmt, mode=cfg.eval_mode,  # type: ignore[arg-type]
                          limit=cfg.eval_limit, max_new_tokens=16, progress=cfg.progress, out_dir=eval_dir,
                          model_name=cfg.model, n_boot=200)
    for suite, agg in result.summary["metrics"].items():
        gen = agg.get("cf_acc") or {}
        st.say(f"  {suite}: context answer {gen.get('mean', float('nan')):.2f}, p(ctx)>p(mem) "
               f"{(agg.get('logit_cf_rate') or {}).get('mean', float('nan')):.2f} (n={agg['n']})")
    st.done("step-0 eval", t)

    graded_html = ""
    if cfg.graded_limit:  # ClashEval's two curves: adoption by perturbation degree and by prior confidence
        from ctxrely.report.adoption import adoption_section

        t = st.start(f"graded conflicts: when does {cfg.model} stop trusting a wrong passage?")
        gdir = out / "graded"
        if not (gdir / "summary.json").exists():
            evaluate(model, tok, ["graded_years", "graded_numbers"], fmt=fmt, mode="both", limit=cfg.graded_limit,
                     max_new_tokens=16, progress=cfg.progress, out_dir=gdir, model_name=cfg.model, n_boot=200)
        graded_html = adoption_section([gdir], out / "report")
        st.done("graded conflicts", t)

    aware_html = ""
    if cfg.awareness:  # the chat template vs the bare prompt (Wang et al. 2024), same loaded model
        from ctxrely.awareness.demo import QUICK, awareness_html, run_awareness

        t = st.start(f"awareness: {cfg.model} with and without its chat template")
        aware = run_awareness(model, tok, out / "awareness", model_name=cfg.model, settings=QUICK if cfg.quick else None,
                              progress=cfg.progress, say=st.say)
        aware_html = awareness_html(aware, out / "awareness")
        st.done("awareness", t)
    del model

    t = st.start(f"3/3 lab preset {preset.name!r}: fine-tuning {', '.join(preset.runs)}")
    outcome = run_lab(preset, lab_out, progress=cfg.progress, report=False, say=st.say)
    st.say((lab_out / "comparison.md").read_text())
    st.done("lab", t)

    t = st.start("report")
    note = ("<p class=\"muted\">Quick mode: a tiny <em>random</em> model and tiny settings, to check the "
            "pipeline; its numbers mean nothing.</p>") if cfg.quick else ""
    sections = [("Theory sandbox: the paper's one-layer model, simulated", note + theory_html(theory, plots)),
                (f"Before fine-tuning: step-0 knowledge-conflict eval of {cfg.model}",
                 eval_html(result, cfg.model, fmt))]
    if graded_html:
        sections.append((f"Graded conflicts: adoption of a wrong passage by degree and by prior ({cfg.model})",
                         graded_html))
    if aware_html:
        sections.append((f"Context awareness under the chat template: {cfg.model}", aware_html))
    measured = measured_html(outcome.comparison)
    after = [("Measured on the long preset (gemma3-270m base): baseline vs every mitigation", measured)] \
        if measured else []
    from ctxrely.lab.evidence import evidence_sections

    after += evidence_sections()  # the other two papers' measured tables (docs/findings.md), not rerun
    report = build_lab_report(outcome, title=f"ctxrely demo{' (quick)' if cfg.quick else ''}: does "
                              f"{cfg.model} still listen to its context?", extra_sections=sections,
                              out_dir=out / "report", after_sections=after)
    st.done("report", t)
    (out / "demo_times.json").write_text(json.dumps({k: round(v, 1) for k, v in st.times.items()}, indent=2))
    return report
