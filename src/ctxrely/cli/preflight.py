"""Checks every command's options get before its ``run`` starts: outputs, ranges and conflicts.

:func:`preflight` runs in :func:`ctxrely.cli.main.main` between parsing and the command, so a bad
``--out`` (under a file, unwritable, a folder where a file goes), an output that would replace an
input, a value out of range (``--n-boot 0``, ``--threshold nan``, ``--top-k 0``,
``--max-length -5``), a flag that would be ignored (``--cad-alpha`` without ``--decode cad``) or a
device that is not there is one :class:`~ctxrely.errors.ConfigError` before any model loads or any
data is read. The outputs of each command are listed once, in :data:`OUTPUTS`.

Example:
    >>> import argparse
    >>> args = argparse.Namespace(command="filter", out="f.jsonl", threshold=float("nan"), drop=None)
    >>> preflight(args, ["filter", "--threshold", "nan"])
    Traceback (most recent call last):
    ...
    ctxrely.errors.ConfigError: --threshold must be a finite number, got nan
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

from ctxrely.errors import ConfigError
from ctxrely.paths import check_out_dir, check_out_file, refuse_overwrite

# command -> (argparse dest, option as the user writes it, "dir" | "file"); "steer" depends on the subcommand
OUTPUTS: dict[str, list[tuple[str, str, str]]] = {
    "eval": [("out", "--out", "dir")],
    "graded": [("out", "--out", "dir")],
    "nih": [("out", "--out", "dir")],
    "attention": [("out", "--out", "dir")],
    "score-data": [("out", "--out", "dir")],
    "theory": [("out", "--out", "dir")],
    "export-lm-eval": [("dir", "DIR", "dir")],
    "lab": [("out", "--out", "dir")],
    "demo": [("out", "--out", "dir")],
    "report": [("out", "--out", "dir")],
    "icl-data": [("out", "--out", "file"), ("probes", "--probes", "dir")],
    "lab-table": [("md", "--md", "file"), ("json", "--json", "file")],
    "filter": [("out", "--out", "file")],
    "augment": [("out", "--out", "file")],
    "steer profile": [("out", "--out", "file")],
    "steer compare": [("out", "--out", "dir")],
}


def given(argv: Sequence[str], flag: str) -> bool:
    """Whether ``flag`` (or an abbreviation argparse accepts, or ``flag=value``) is on the command line.

    Example:
        >>> given(["eval", "--cad-alpha=2"], "--cad-alpha"), given(["eval"], "--cad-alpha")
        (True, False)
    """
    for tok in argv:
        name = tok.split("=", 1)[0]
        if name == "--":
            return False
        if name.startswith("--") and len(name) > 3 and flag.startswith(name):
            return True
    return False


def command_of(args: argparse.Namespace) -> str:
    """``eval``, ``steer profile``, ...: the key of :data:`OUTPUTS`."""
    cmd = getattr(args, "command", None) or ""
    sub = getattr(args, "steer_command", None)
    return f"{cmd} {sub}" if cmd == "steer" and sub else cmd


def check_outputs(args: argparse.Namespace) -> None:
    """Every output option of the command is a writable folder / file path (nothing is created)."""
    for dest, option, kind in OUTPUTS.get(command_of(args), []):
        value = getattr(args, dest, None)
        if value is None or value == "":
            continue
        (check_out_dir if kind == "dir" else check_out_file)(value, option)


def _inputs(args: argparse.Namespace) -> list[tuple[str, Any]]:
    data = getattr(args, "data", None)
    pairs: list[tuple[str, Any]] = [("--data", d) for d in (data if isinstance(data, list) else [data]) if d]
    for dest in ("novel", "test", "entities", "heads", "needle"):
        if getattr(args, dest, None):
            pairs.append((f"--{dest}", getattr(args, dest)))
    return pairs


def check_overwrites(args: argparse.Namespace) -> None:
    """No file output may be one of the command's input files (``--data``, ``--novel``, ...); rows
    written back in their format need a known suffix."""
    if command_of(args) in ("filter", "augment") and getattr(args, "out", None):
        from ctxrely.data.records import file_type_of

        file_type_of(args.out)  # .jsonl/.json/.csv/.tsv, known before the rows are computed
    for dest, option, kind in OUTPUTS.get(command_of(args), []):
        value = getattr(args, dest, None)
        if kind == "file" and value:
            refuse_overwrite(value, _inputs(args), option)


def _finite(args: argparse.Namespace, dest: str, option: str) -> None:
    v = getattr(args, dest, None)
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"{option} must be a finite number, got {v}")


def _at_least(args: argparse.Namespace, dest: str, option: str, low: int, why: str = "") -> None:
    v = getattr(args, dest, None)
    if v is not None and v < low:
        raise ConfigError(f"{option} must be >= {low}{why}, got {v}")


def check_values(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """Ranges and combinations the commands would otherwise accept and then ignore or misreport."""
    cmd = command_of(args)
    for dest in ("threshold", "drop", "ratio", "cs_threshold", "cs_quantile", "attn_threshold", "alpha",
                 "cad_alpha", "cad_floor", "p", "eps"):
        _finite(args, dest, "--" + dest.replace("_", "-"))
    if any(not s for s in getattr(args, "stop", None) or []):
        raise ConfigError("--stop '': an empty stop string would be ignored; pass the text to stop at")
    if cmd == "eval":
        _at_least(args, "n_boot", "--n-boot", 0, " (bootstrap resamples; 0: no intervals)")
    if cmd in ("export-lm-eval", "score-data"):
        _at_least(args, "max_length", "--max-length", 1, " tokens")
    if cmd == "score-data" and getattr(args, "layer", None) is not None and not getattr(args, "no_attention", False):
        from ctxrely.models.load import config_layers

        n = config_layers(args.model)
        if n is not None and not -n <= args.layer < n:
            raise ConfigError(f"--layer {args.layer}: {args.model} has {n} layers (0..{n - 1}, or -1..-{n} from "
                              "the end)")
    new_tokens, model = getattr(args, "max_new_tokens", None), getattr(args, "model", None)
    if isinstance(new_tokens, int) and isinstance(model, str) and getattr(args, "mode", None) != "logits":
        from ctxrely.models.load import WINDOW_KEYS, config_int

        window = config_int(model, *WINDOW_KEYS)
        if window is not None and new_tokens >= window:
            raise ConfigError(f"--max-new-tokens {new_tokens} leaves no room for the prompt in {model}'s window "
                              f"of {window} tokens; lower --max-new-tokens")
    if cmd == "steer profile":
        _at_least(args, "top_k", "--top-k", 1, " heads")
        _at_least(args, "top_layers", "--top-layers", 1, " layers")
    if cmd == "steer compare" and not getattr(args, "heads", None):
        variants = [v.strip() for v in (getattr(args, "variants", None) or "").split(",")]
        if "pasta-profiled" in variants:
            raise ConfigError("--variants pasta-profiled needs --heads FILE (from ctxrely steer profile)")
    if cmd == "export-lm-eval" and getattr(args, "prefix", None) is not None:
        from ctxrely.paths import safe_name

        safe_name(args.prefix, "--prefix")
    decode = getattr(args, "decode", None)
    if decode is not None:
        if decode == "plain" and (given(argv, "--cad-alpha") or given(argv, "--cad-floor")):
            raise ConfigError("--cad-alpha/--cad-floor only act with --decode cad or --decode adacad; add one "
                              "or drop them")
        if decode == "cad" and given(argv, "--cad-floor"):
            raise ConfigError("--cad-floor is AdaCAD's lower bound: use it with --decode adacad")


def check_device(args: argparse.Namespace) -> None:
    """A named ``--device`` (not ``auto``) must exist on this machine."""
    device = getattr(args, "device", None)
    if isinstance(device, str) and device not in ("auto", "cpu"):
        from ctxrely.models.load import check_device as check

        check(device)


def check_head_files(args: argparse.Namespace) -> None:
    """A head file (``steer compare --heads``, ``--steer pasta:heads=FILE``) parses before the model loads."""
    from ctxrely.steer.heads import _pairs, read_head_file

    files = [getattr(args, "heads", None)]
    steer = getattr(args, "steer", None)
    if isinstance(steer, str) and "heads=" in steer:
        files.append(steer.split("heads=", 1)[1].split(",", 1)[0].strip())
    for f in files:
        if f and f != "all":
            _pairs(read_head_file(f), str(f))


def quiet_progress(args: argparse.Namespace) -> None:
    """``--no-progress``: no progress bars from datasets or transformers (weights loading, hub files)
    for the rest of the process; the commands switch off their own and the trainer's."""
    if not getattr(args, "no_progress", False):
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        import datasets
    except ImportError:  # an optional extra
        return
    datasets.disable_progress_bars()


def preflight(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """All the checks above, in order: values, outputs, overwrites, head files, device; then --no-progress."""
    check_values(args, argv)
    check_outputs(args)
    check_overwrites(args)
    check_head_files(args)
    check_device(args)
    quiet_progress(args)
