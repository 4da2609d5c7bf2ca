"""A cheap fingerprint of a model's weights, for every settings hash that keys resumption.

Two models under the same name or path with different weights get different fingerprints, so a
rerun after re-saving other weights at the same path starts over instead of resuming old rows.

- In memory (:func:`weights_fingerprint` of a model): names, shapes and dtypes of every parameter
  plus a strided sample of up to 64 values of each (one device-to-host copy); a model whose
  parameters are sharded away (ZeRO-3, FSDP without full params) falls back to its folder.
- On disk (:func:`path_fingerprint`, before a model loads): every ``*.safetensors`` file's header
  bytes, size and mtime, plus ``config.json``; a hub id uses its cached snapshot when there is one.

Example:
    >>> from ctxrely.models.tiny import tiny_model  # doctest: +SKIP
    >>> weights_fingerprint(tiny_model("llama")[0])  # doctest: +SKIP
    'w:3f9a0c1d2e4b6a70'
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

SAMPLES = 64


def path_fingerprint(name_or_path: str | Path | None) -> str | None:
    """A fingerprint of the weights files under a local folder or cached hub snapshot (None if none)."""
    if not name_or_path:
        return None
    folder = Path(name_or_path)
    if not folder.is_dir():
        folder = _cached_snapshot(str(name_or_path))  # type: ignore[assignment]
        if folder is None:
            return None
    h = hashlib.sha256()
    names = sorted(folder.glob("*.safetensors")) + [p for p in (folder / "config.json",
                                                                folder / "model.safetensors.index.json",
                                                                folder / "adapter_config.json") if p.is_file()]
    if not names:
        return None
    for p in names:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}:".encode())
        with open(p, "rb") as f:
            if p.suffix == ".safetensors":
                n = int.from_bytes(f.read(8), "little")
                h.update(f.read(min(n, 1 << 24)))
            else:
                h.update(f.read(1 << 20))
    return "f:" + h.hexdigest()[:16]


def _cached_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not a hub id, not cached, no huggingface_hub: nothing to fingerprint
        return None


def weights_fingerprint(model: Any) -> str | None:
    """A cheap, deterministic fingerprint of an in-memory model's weights (see the module docstring)."""
    if isinstance(model, (str, Path)):
        return path_fingerprint(model)
    params = getattr(model, "named_parameters", None)
    if params is None:
        return None
    import torch

    h = hashlib.sha256()
    samples = []
    with torch.no_grad():
        for name, p in params():
            h.update(f"{name}:{tuple(p.shape)}:{p.dtype};".encode())
            local = p.to_local() if hasattr(p, "to_local") else p  # a DTensor: this rank's shard, no collective
            if local.numel() == 0 or local.device.type == "meta":
                continue
            flat = local.detach().reshape(-1)
            step = max(1, flat.numel() // SAMPLES)
            samples.append(flat[::step][:SAMPLES].float())
    if not samples:  # parameters sharded away: the folder it came from
        disk = path_fingerprint(getattr(getattr(model, "config", None), "_name_or_path", None))
        return disk and "w" + disk
    h.update(torch.cat([s.to(samples[0].device) for s in samples]).cpu().numpy().tobytes())
    return "w:" + h.hexdigest()[:16]
