"""Issue 19: every data loader, fed truncated, garbage and mixed-encoding files, either loads or raises
one :class:`~ctxrely.errors.CtxrelyError` whose message is one line; never another exception. A sample
goes through the CLI too: one line on stderr, no traceback.

Damage is deterministic (seeded), so a failure names a reproducible file.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ctxrely.errors import CtxrelyError
from test_cad_data import _adacad_rows, _bigbench
from test_diagnose_rows import make_rows
from test_eval_cli import GOOD
from test_rc import DROP, QUAC, SQUAD

BB = _bigbench([{"input": "\nQuestion: who wrote hamlet?\nContext: Hamlet was written by Jane Austen .",
                 "target": "Jane Austen", "target_scores": {"Jane Austen": 1, "William Shakespeare": 0}}])


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


# name -> (file name, valid text)
BASES: dict[str, tuple[str, str]] = {
    "cpi_json": ("cpi.json", json.dumps([GOOD, dict(GOOD, question="Où est la capitale ?")], ensure_ascii=False,
                                        indent=1)),
    "cpi_jsonl": ("cpi.jsonl", _jsonl([GOOD, dict(GOOD, question="Où est la capitale ?")])),
    "cpi_csv": ("cpi.csv", "context,question,answer,memory_answer\n"
                           "\"Lyon, not Paris.\",Capitale ?,Lyon,Paris\nLyon is it.,Où ?,Lyon,Paris\n"),
    "squad": ("squad.json", json.dumps(SQUAD)),
    "quac": ("quac.json", json.dumps(QUAC)),
    "drop": ("drop.json", json.dumps(DROP)),
    "bigbench": ("task.json", json.dumps(BB, indent=2)),
    "cad_pairs": ("pairs.jsonl", _jsonl(_adacad_rows())),
    "sft_jsonl": ("train.jsonl", _jsonl(make_rows("alpaca"))),
    "sft_csv": ("train.csv", "instruction,input,output\nQ?,Ctx é.,A\nR?,Ctx.,B\n"),
    "pairs": ("pool.jsonl", _jsonl([{"input": f"q{i} é", "output": f"a{i}"} for i in range(6)])),
    "needles": ("needles.yaml", "- needle: The pass is 42.\n  question: What is the pass?\n  keywords: ['42']\n"),
}


def _load_data(p: Path) -> Any:
    from ctxrely.data.loaders import load_data

    return load_data(str(p))


def _load_sft(p: Path) -> Any:
    from ctxrely.data.sft import load_sft

    return load_sft(str(p))


def _read_pool(p: Path) -> Any:
    from ctxrely.icl.rows import read_pool

    return read_pool(str(p))


def _load_needles(p: Path) -> Any:
    from ctxrely.awareness.haystack import load_needles

    return load_needles(p)


def _read_records(p: Path) -> Any:
    from ctxrely.data.records import read_records

    return read_records(str(p))


LOADERS: dict[str, Callable[[Path], Any]] = {"load_data": _load_data, "load_sft": _load_sft,
                                             "read_pool": _read_pool, "load_needles": _load_needles,
                                             "read_records": _read_records}
# which loaders read which base files (every loader also gets every other loader's files: wrong kinds)
OWN = {"load_data": ["cpi_json", "cpi_jsonl", "cpi_csv", "squad", "quac", "drop", "bigbench", "cad_pairs"],
       "load_sft": ["sft_jsonl", "sft_csv"], "read_pool": ["pairs"], "load_needles": ["needles"],
       "read_records": ["cpi_json", "cpi_jsonl", "sft_csv"]}


def damaged(text: str, seed: int) -> dict[str, bytes]:
    """Truncations, garbage and encoding damage of one valid file's text."""
    rng = random.Random(seed)
    data = text.encode("utf-8")
    out = {f"cut{f}": data[: int(len(data) * f / 100)] for f in (0, 10, 50, 90, 99)}
    out["garbage"] = bytes(rng.randrange(256) for _ in range(200))
    out["nul"] = b"\0" * 64
    out["latin1"] = text.encode("latin-1", errors="replace")
    mid = len(data) // 2
    out["mixed"] = data[:mid] + "\nCafé ö\n".encode("latin-1") + data[mid:]
    out["utf16"] = text.encode("utf-16")
    out["bom_garbage"] = b"\xef\xbb\xbf" + bytes(rng.randrange(32, 127) for _ in range(80))
    flip = bytearray(data)
    for _ in range(max(1, len(flip) // 50)):
        flip[rng.randrange(len(flip))] = rng.choice(b'{}[]",:\n\\')
    out["flipped"] = bytes(flip)
    out["wrong_type"] = json.dumps({"a": [1, 2, {"b": None}]}).encode()
    out["json_scalars"] = b"[1, \"x\", null, true]"
    return out


def _cases() -> list[tuple[str, str, str, str]]:
    cases = []
    for loader, own in OWN.items():
        for base in own + [b for b in BASES if b not in own][:3]:
            for kind in damaged("x", 0):
                cases.append((loader, base, kind, f"{loader}-{base}-{kind}"))
    return cases


CASES = _cases()


@pytest.mark.parametrize("loader, base, kind", [c[:3] for c in CASES], ids=[c[3] for c in CASES])
def test_loader_damage_is_one_error_line(tmp_path, loader, base, kind):
    name, text = BASES[base]
    path = tmp_path / name
    path.write_bytes(damaged(text, seed=zlib.crc32(f"{loader}/{base}/{kind}".encode()))[kind])
    try:
        LOADERS[loader](path)
    except CtxrelyError as e:
        msg = str(e)
        assert msg.strip() and "\n" not in msg.strip(), msg
        assert "Traceback" not in msg
    # any other exception fails the test with its traceback: that is the bug this test exists to find


@pytest.mark.parametrize("loader", sorted(OWN))
def test_valid_files_load(tmp_path, loader):
    """The bases themselves are good input (so the damage above is what the errors are about)."""
    for base in OWN[loader]:
        name, text = BASES[base]
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        LOADERS[loader](path)


@pytest.mark.parametrize("command, base, kind", [
    ("eval", "cpi_jsonl", "mixed"), ("eval", "squad", "cut50"), ("eval", "cad_pairs", "flipped"),
    ("eval", "cpi_csv", "garbage"), ("augment", "sft_jsonl", "mixed"), ("icl-data", "pairs", "cut90"),
    ("nih", "needles", "garbage"),
])
def test_cli_reports_damaged_files_in_one_line(capsys, tmp_path, command, base, kind):
    from ctxrely.cli.main import main

    name, text = BASES[base]
    path = tmp_path / name
    path.write_bytes(damaged(text, seed=1)[kind])
    model = str(tmp_path / "no-model-needed")  # every file is read before a model would load
    argv = {"eval": ["eval", "--model", model, "--data", str(path), "--out", str(tmp_path / "o")],
            "augment": ["augment", "--data", str(path), "--out", str(tmp_path / "a.jsonl")],
            "icl-data": ["icl-data", "--data", str(path), "--out", str(tmp_path / "i.jsonl")],
            "nih": ["nih", "--model", model, "--needle", str(path), "--out", str(tmp_path / "o")]}[command]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
