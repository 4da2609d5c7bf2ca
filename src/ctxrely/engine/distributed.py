"""Ranks: split work across processes, gather it back in order, and keep sharded models in lock-step.

Under ``accelerate launch`` / ``torchrun`` every process scores ``items[rank::world]`` and
:func:`gather_in_order` puts every rank's results back in the original order, so the pooled metrics
equal a one-process run.

With sharded parameters (FSDP1, FSDP2 ``fully_shard``, DeepSpeed ZeRO-3) no process holds the whole
model: every forward pass is a collective, so every rank must run the same number of forwards.
:func:`lockstep` makes that so whatever the work is (batches of different sizes, generation that
stops earlier on one rank, attention passes, training-data scoring), the way ``torch``'s ``Join``
does it for DDP with uneven inputs: before each forward a rank says "one more forward" in a small
all-reduce; a rank that has finished its share answers "none" and runs a one-token dummy forward
(result dropped) for every forward another rank still runs, until no rank has one left. A rank that
fails says so in the same all-reduce, and every rank raises the same one-line :class:`RankError`.
Every collective added here waits at most ``CTXRELY_DIST_TIMEOUT`` seconds (default 1800).

Example:
    >>> world_info()
    (0, 1)
    >>> shard([10, 11, 12, 13, 14], rank=1, world=2)
    [(1, 11), (3, 13)]
    >>> gather_in_order([(1, "b"), (0, "a")])
    ['a', 'b']
    >>> with lockstep(None, "eval"):  # one process: nothing to agree on
    ...     pass
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, Literal, TypeVar

from ctxrely.errors import CtxrelyError

T = TypeVar("T")
Sharding = Literal["single", "replicated", "ddp", "fsdp1", "fsdp2", "zero3"]
SHARDED = ("fsdp1", "fsdp2", "zero3")  # kinds whose forward pass is a collective
DEFAULT_TIMEOUT_S = 1800.0

log = logging.getLogger(__name__)
_logged: set[str] = set()


class RankError(CtxrelyError):
    """One rank failed (or stopped answering); every rank raises this same one-line error."""


class _PeerFailed(Exception):
    """Another rank announced a failure in a lock-step round (this rank has consumed that round)."""


def _dist() -> Any:
    try:
        import torch.distributed as dist
    except ImportError:  # torch is optional for `import ctxrely`
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


def world_info() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, ``(0, 1)`` without one."""
    dist = _dist()
    return (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)


def launch_info() -> tuple[int, int]:
    """``(rank, world_size)`` as the launcher (torchrun, ``accelerate launch``) sets them in the
    environment, readable before any process group exists; ``(0, 1)`` when unset or malformed."""
    try:
        return int(os.environ.get("RANK", "0") or 0), int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return 0, 1


def timeout_s() -> float:
    """Seconds any collective ctxrely adds waits for the other ranks (``CTXRELY_DIST_TIMEOUT``)."""
    raw = os.environ.get("CTXRELY_DIST_TIMEOUT")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise CtxrelyError(f"CTXRELY_DIST_TIMEOUT must be a number of seconds, got {raw!r}") from None


def shard(items: Sequence[T], rank: int | None = None, world: int | None = None) -> list[tuple[int, T]]:
    """This rank's ``(index, item)`` pairs: every ``world``-th item starting at ``rank``."""
    if rank is None or world is None:
        rank, world = world_info()
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world of size {world}")
    return [(i, items[i]) for i in range(rank, len(items), world)]


def _device(dist: Any) -> Any:
    import torch

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _wait(work: Any, where: str) -> None:
    t = timeout_s()
    try:
        ok = work.wait(timedelta(seconds=t))
    except Exception as e:  # gloo raises on timeout; a dead peer resets the connection
        raise RankError(f"rank {world_info()[0]}: no answer from the other ranks within {t:g}s at {where} "
                        f"({type(e).__name__}); one of them failed or hangs (see its log)") from None
    if ok is False:
        raise RankError(f"rank {world_info()[0]}: no answer from the other ranks within {t:g}s at {where}; "
                        "one of them failed or hangs (see its log)")


def all_gather(obj: Any, where: str = "gather") -> list[Any]:
    """Every rank's ``obj`` (picklable, produced in-process), on every rank; ``[obj]`` without a group.

    Waits at most :func:`timeout_s` for the other ranks (raises :class:`RankError` after that).
    """
    dist = _dist()
    if dist is None:
        return [obj]
    import torch

    dev = _device(dist)
    data = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8).to(dev)
    sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(dist.get_world_size())]
    _wait(dist.all_gather(sizes, torch.tensor([data.numel()], dtype=torch.int64, device=dev), async_op=True), where)
    width = max(int(s.item()) for s in sizes)
    padded = torch.zeros(width, dtype=torch.uint8, device=dev)
    padded[:data.numel()] = data
    parts = [torch.zeros(width, dtype=torch.uint8, device=dev) for _ in sizes]
    _wait(dist.all_gather(parts, padded, async_op=True), where)
    # the bytes come from ctxrely's own ranks of this job (as in torch's all_gather_object), never from a file
    return [pickle.loads(p[:int(s.item())].cpu().numpy().tobytes()) for p, s in zip(parts, sizes, strict=True)]


def gather_in_order(pairs: list[tuple[int, Any]]) -> list[Any]:
    """Gather ``(index, value)`` pairs from all ranks and return the values sorted by index."""
    merged = [p for part in all_gather(pairs) for p in part]
    merged.sort(key=lambda p: p[0])
    return [v for _, v in merged]


def sharding(model: Any) -> Sharding:
    """Which case applies: ``single`` process, ``replicated`` or ``ddp`` weights, or sharded ones
    (``fsdp1``, ``fsdp2`` for ``fully_shard``, ``zero3`` for DeepSpeed ZeRO-3), read from the model."""
    if world_info()[1] == 1:
        return "single"
    return _wrapper_kind(model)[0]


def _wrapper_kind(model: Any) -> tuple[Sharding, Any]:
    """``(kind, the outermost module whose forward is the collective)``."""
    if model is None or not hasattr(model, "modules"):
        return "replicated", None
    fsdp1, fsdp2 = _fsdp_classes()
    for m in model.modules():
        if fsdp2 is not None and isinstance(m, fsdp2):
            return "fsdp2", m
        if fsdp1 is not None and isinstance(m, fsdp1):
            return "fsdp1", m
    if _is_zero3(model):
        return "zero3", model
    from torch.nn.parallel import DistributedDataParallel

    return ("ddp" if isinstance(model, DistributedDataParallel) else "replicated"), None


def _fsdp_classes() -> tuple[Any, Any]:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel as fsdp1
    except ImportError:
        fsdp1 = None
    try:
        from torch.distributed.fsdp import FSDPModule as fsdp2
    except ImportError:
        try:
            from torch.distributed._composable.fsdp import FSDPModule as fsdp2
        except ImportError:
            fsdp2 = None
    return fsdp1, fsdp2


def _is_zero3(model: Any) -> bool:
    """DeepSpeed ZeRO-3 partitions parameters in place and tags each with ``ds_id`` / ``ds_status``."""
    if getattr(model, "_ctxrely_gathered", False):  # inside gathered_params: full weights, local forwards
        return False
    stage = getattr(model, "zero_optimization_stage", None)
    if callable(stage):
        with contextlib.suppress(Exception):
            return int(stage()) == 3
    return any(hasattr(p, "ds_id") for p in model.parameters())


def is_sharded(model: Any) -> bool:
    """Whether ``model``'s forward pass is a collective (FSDP1, FSDP2, ZeRO-3 parameters)."""
    return _wrapper_kind(model)[0] in SHARDED


def inference_context(model: Any) -> Any:
    """``torch.inference_mode()``, or ``torch.no_grad()`` for sharded parameters: FSDP2 keeps the
    buffers it all-gathers into, and an inference tensor there breaks the next training step.

    Example:
        >>> import torch
        >>> with inference_context(torch.nn.Linear(2, 2)):
        ...     torch.is_inference_mode_enabled()
        True
    """
    import torch

    return torch.no_grad() if is_sharded(model) else torch.inference_mode()


class LockStep:
    """The lock-step protocol of one sharded module (see the module docstring).

    ``forwards`` counts this rank's own forwards, ``dummies`` the one-token forwards it ran so that
    another rank could finish, ``rounds`` the all-reduces it took part in.
    """

    def __init__(self, module: Any, kind: Sharding) -> None:
        self.module, self.kind = module, kind
        self.forwards = self.dummies = self.rounds = 0
        self.depth = 0
        self._quiet = False  # inside a dummy forward: its hook must not start another round
        self._handle: Any = None

    def install(self) -> None:
        if self.module is not None:
            self._handle = self.module.register_forward_pre_hook(self._pre_forward, prepend=True)

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def round(self, busy: int, failed: int, where: str) -> tuple[int, int]:
        """All-reduce (max) of ``(busy, failed)`` over the ranks, with the timeout."""
        import torch

        dist = _dist()
        t = torch.tensor([busy, failed], dtype=torch.int64, device=_device(dist))
        _wait(dist.all_reduce(t, op=dist.ReduceOp.MAX, async_op=True), where)
        self.rounds += 1
        return int(t[0]), int(t[1])

    def _pre_forward(self, module: Any, args: Any) -> None:
        if self._quiet:
            return
        self.forwards += 1
        if self.round(1, 0, "a forward pass")[1]:
            raise _PeerFailed

    def join(self) -> None:
        """Run dummy forwards until no rank has a forward left (every rank leaves together)."""
        while True:
            busy, failed = self.round(0, 0, "the end of this rank's share")
            if failed:
                raise _PeerFailed
            if not busy:
                return
            self._dummy_forward()

    def _dummy_forward(self) -> None:
        import torch

        p = next(self.module.parameters())
        ids = torch.zeros((1, 1), dtype=torch.long, device=p.device)
        self._quiet = True
        try:
            with torch.no_grad():
                self.module(input_ids=ids)
        finally:
            self._quiet = False
        self.dummies += 1


_ACTIVE: dict[int, LockStep] = {}


@contextlib.contextmanager
def lockstep(model: Any, what: str = "eval") -> Iterator[LockStep | None]:
    """Run the block in lock-step with the other ranks; every rank leaves it together.

    Sharded parameters (FSDP1, FSDP2, ZeRO-3): every forward of ``model`` inside the block is matched
    on every rank (dummy forwards fill in for a rank with less work). Any process group: a failure on
    one rank makes every rank raise the same one-line :class:`RankError` at the end of the block.
    One process: nothing happens. Blocks nest (an inner block joins the ranks too).

    Example:
        >>> with lockstep(None, "probe") as ls:
        ...     ls is None
        True
    """
    if world_info()[1] == 1:
        yield None
        return
    kind, module = _wrapper_kind(model)
    key = id(module) if module is not None else 0
    ls = _ACTIVE.get(key)
    if ls is None:
        ls = _ACTIVE[key] = LockStep(module if kind in SHARDED else None, kind)
        ls.install()
        _note(kind, what)
    ls.depth += 1
    try:
        try:
            yield ls
        except RankError:
            raise  # already agreed by an inner block
        except _PeerFailed:
            _agree_failure(None, what)
        except BaseException as e:
            try:
                ls.round(0, 1, f"reporting a failure in {what}")
            except RankError:
                raise RankError(f"rank {world_info()[0]} failed in {what}: {_one_line(e)}") from e
            _agree_failure(e, what)
        else:
            try:
                ls.join()
            except _PeerFailed:
                _agree_failure(None, what)
    finally:
        ls.depth -= 1
        if ls.depth == 0:
            ls.remove()
            _ACTIVE.pop(key, None)
            if ls.module is not None:
                log.debug("%s: %d forwards, %d dummy forwards, %d rounds", what, ls.forwards, ls.dummies, ls.rounds)


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _agree_failure(err: BaseException | None, what: str) -> None:
    """Every rank learns who failed and why; all raise the same line (the lowest failing rank's)."""
    rank, world = world_info()
    msgs = all_gather(None if err is None else _one_line(err), f"reporting a failure in {what}")
    bad = [(r, m) for r, m in enumerate(msgs) if m is not None]
    r, m = bad[0] if bad else (rank, "a peer stopped without a message")
    more = f" (and {len(bad) - 1} other rank(s))" if len(bad) > 1 else ""
    raise RankError(f"{what} failed on rank {r} of {world}{more}: {m}") from err


def _note(kind: str, what: str) -> None:
    """Say once per process which case applies (main process only)."""
    if kind in _logged or world_info()[0] != 0:
        return
    _logged.add(kind)
    how = {"fsdp1": "FSDP1", "fsdp2": "FSDP2 (fully_shard)", "zero3": "DeepSpeed ZeRO-3"}
    if kind == "gathered":
        log.info("ctxrely %s: DeepSpeed ZeRO-3 parameters gathered on every rank (TRL's "
                 "unwrap_model_for_generation); forwards are local", what)
    elif kind in SHARDED:
        log.info("ctxrely %s: parameters sharded by %s; evaluating in lock-step (every rank runs the same "
                 "number of forward passes)", what, how[kind])
    else:
        log.info("ctxrely %s: %s parameters on %d processes; each evaluates its share", what,
                 "DDP" if kind == "ddp" else "replicated", world_info()[1])


def run_sharded(fn: Callable[[list[T]], Sequence[Any]], items: Sequence[T], model: Any, what: str) -> list[Any]:
    """``fn`` over this rank's share of ``items`` (in lock-step); every rank gets all results in order.

    Example:
        >>> run_sharded(lambda xs: [x * 2 for x in xs], [1, 2, 3], None, "toy")
        [2, 4, 6]
    """
    part = shard(items)
    with lockstep(model, what):
        vals = list(fn([x for _, x in part])) if part else []
        if len(vals) != len(part):
            raise ValueError(f"{what}: {len(vals)} results for {len(part)} items")
    return gather_in_order([(i, v) for (i, _), v in zip(part, vals, strict=True)])


@contextlib.contextmanager
def gathered_params(model: Any, accelerator: Any = None) -> Iterator[Any]:
    """Under DeepSpeed ZeRO-3 with an ``accelerator``: the full parameters on every rank for the block
    (TRL's ``unwrap_model_for_generation``, which gathers them and lifts ZeRO's hooks), so forwards
    are local and no lock-step is needed. Anything else: ``model`` itself.

    Needs the full model to fit on one device, and an optimizer prepared with the model (TRL lifts
    ZeRO's hooks through it); without one, use the lock-step path (:func:`lockstep`), which needs
    neither.

    Example:
        >>> with gathered_params(None) as m:  # not ZeRO-3: the model itself
        ...     m is None
        True
    """
    if accelerator is None or sharding(model) != "zero3":
        yield model
        return
    try:
        from trl.models.utils import unwrap_model_for_generation
    except ImportError as e:
        raise CtxrelyError("gathering ZeRO-3 parameters needs trl (pip install trl)") from e
    with unwrap_model_for_generation(model, accelerator, gather_deepspeed3_params=True) as full:
        full._ctxrely_gathered = True
        _note("gathered", "eval")
        try:
            yield full
        finally:
            del full._ctxrely_gathered


def shard_fsdp2(model: Any, device: str = "cpu") -> Any:
    """Shard an unsharded HF causal LM over every process with FSDP2 for inference and return it:
    ``fully_shard`` on each decoder layer (the classes the model names in ``_no_split_modules``, as
    accelerate's auto-wrap does) and on the root, over a 1-D mesh of all ranks on ``device``'s type.
    Load the model on the CPU first: each layer moves to ``device`` only as its shard.

    Example:
        >>> model = shard_fsdp2(load_model("Qwen/Qwen2.5-72B-Instruct", device="cpu")[0], "cuda:0")  # doctest: +SKIP
    """
    import torch
    from torch.distributed.device_mesh import init_device_mesh

    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:  # torch < 2.6
        from torch.distributed._composable.fsdp import fully_shard
    _, world = world_info()
    if world == 1:
        raise CtxrelyError("sharding with FSDP2 needs several processes (launch with accelerate launch or torchrun)")
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if kind == "cuda":
        torch.cuda.set_device(torch.device(device))
    mesh = init_device_mesh(kind, (world,))
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise CtxrelyError(f"{type(model).__name__} names no decoder layer class (_no_split_modules); "
                           "cannot shard it with FSDP2")
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model
