"""Refuse, before it runs, any op whose outputs would allocate more than a per-op byte cap.

Why: a few bytes of command (`new_full(x, [10**6, 10**6], 0)`, `repeat`, `outer`, huge pads or
upsampling scales, `clone` of an `expand`ed view) would make the worker allocate terabytes and die
under the OOM killer or push its host into swap.

How: the op runs on meta tensors (the arguments' shape, stride, dtype and offset, no data; `device`
forced to meta, `pin_memory` off), so torch sizes the outputs without allocating or reading data.
Counted: output storages that are no input's storage (`untyped_storage()` identity, not schema
alias info: `reshape` of an expanded view copies though its schema says view); views and in-place
ops count nothing. Verdicts are cached by op and argument metadata (numbers with their type: 1,
1.0 and True are equal keys but promote differently); keys over `KEY_BUDGET` are not cached.

NotImplementedError on meta means a data-dependent size. A CPU-vs-meta sweep of every allowlisted
overload (sample arguments) found these; each is bounded in `_bound`, any other is refused:
  nonzero, where(cond)   count_nonzero * ndim * 8: up to 8 * ndim times the input's bytes
  index, bool masks      masks replaced by count_nonzero-long index tensors, then meta: exact
  masked_select          broadcast(self, mask).numel() * itemsize: NOT bounded (broadcasting)
  unique_*, _unique2     numel * (itemsize + 16) for values, inverse and counts: 17x a bool input
  bincount               max(max(self) + 1, minlength) * 8: NOT bounded, depends on the values
  linalg_lstsq           solution, residuals, singular values: sized from the shapes exactly
Other meta errors are the real op's error (or stricter), raised without running it: fail closed.
That also stops `native_batch_norm` in eval mode without stats, which segfaults on CPU.

Cap: `ZSYFT_MAX_ALLOC_BYTES`, else min(4 GiB, max(RAM / 4, 1 GiB)): far above what one op of a
training step needs (and half the 8 GiB one message may carry), yet leaving room for other
workers on a small machine. Not capped: kernel workspace, the total a client stores. Ops on
pointers are checked by the worker holding the data.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

from zsyft.errors import OpNotAllowedError

ENV_VAR = "ZSYFT_MAX_ALLOC_BYTES"
FIXED_CAP_BYTES = 4 << 30
KEY_BUDGET = 256  # numbers in one cache key; bigger argument lists are checked uncached
_TENSOR, _LIST, _DICT, _DATA_DEPENDENT, _FAILED = (object() for _ in range(5))
_NAN = float("nan")  # every NaN argument becomes this one object, so NaN keys compare equal
_META = torch.device("meta")
_Tensor, _Parameter = torch.Tensor, torch.nn.Parameter
_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, AssertionError, OverflowError)
Op = torch._ops.OpOverload


class _Forwarded(Exception):
    """An argument is a pointer: the op runs at another worker."""


def default_cap_bytes() -> int:
    """The cap from `ZSYFT_MAX_ALLOC_BYTES`, else `min(4 GiB, max(RAM / 4, 1 GiB))`."""
    text = os.environ.get(ENV_VAR, "").strip().replace("_", "")
    if text and (not text.isdigit() or int(text) <= 0):
        raise ValueError(f"{ENV_VAR} must be a positive number of bytes, got {text!r}")
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(text) if text else min(FIXED_CAP_BYTES, max(physical // 4, 1 << 30))


def _describe(value: Any, budget: list[int]) -> Any:
    """A hashable description of an argument, from which `_rebuild` makes its meta twin."""
    kind = type(value)
    if kind is _Tensor or kind is _Parameter:
        shape = value.shape
        budget[0] -= 2 * len(shape) + 2
        return (_TENSOR, shape, value.stride(), value.dtype, value.storage_offset())
    budget[0] -= 1 + len(value) // 8 if kind is str else 1
    if kind is float:
        return (float, value if value == value else _NAN)
    if kind is int or kind is bool or kind is complex:
        return (kind, value)
    if kind is list or kind is tuple:
        return (_LIST, *[_describe(item, budget) for item in value])
    if kind is dict:
        return (_DICT, *[(key, _describe(item, budget)) for key, item in value.items()])
    if isinstance(value, _Tensor):
        raise _Forwarded
    return value


def _rebuild(desc: Any) -> Any:
    if type(desc) is not tuple:
        return desc
    tag = desc[0]
    if tag is _TENSOR:
        _, shape, stride, dtype, offset = desc
        if offset == 0:
            return torch.empty_strided(shape, stride, dtype=dtype, device=_META)
        extent = 1 + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))
        base = torch.empty(offset + extent * all(shape), dtype=dtype, device=_META)
        return base.as_strided(shape, stride, offset)
    if tag is _LIST:
        return [_rebuild(item) for item in desc[1:]]
    if tag is _DICT:
        return {key: _rebuild(item) for key, item in desc[1:]}
    return desc[1]


@functools.cache
def _schema_facts(op: Op) -> tuple[bool, dict[str, Any]]:
    """Whether `op` returns tensors, and meta values for its (keyword-only) factory arguments."""
    returns = any("Tensor" in str(ret.type) for ret in op._schema.returns)
    factory = {"device": _META, "pin_memory": None}
    return returns, {a.name: factory[a.name] for a in op._schema.arguments if a.name in factory}


class _Sized:
    """A meta run's verdict: the bytes `op` allocates, and the (shape, stride) of each tensor
    output that is new memory (None for a view or an in-place result), in output order."""

    __slots__ = ("layouts", "nbytes")

    def __init__(self, nbytes: int, layouts: tuple) -> None:
        self.nbytes, self.layouts = nbytes, layouts


def _meta_bytes(op: Op, args: list, kwargs: dict) -> Any:
    """`_Sized` for these meta arguments, or `_DATA_DEPENDENT`, or a failure."""
    kwargs.update(_schema_facts(op)[1])  # allocate nothing but meta, even for `device="cpu"`
    seen = {t.untyped_storage()._cdata for t in tree_leaves([args, kwargs]) if type(t) is _Tensor}
    try:
        result = op(*args, **kwargs)
    except NotImplementedError:
        return _DATA_DEPENDENT
    except Exception as exc:
        return (_FAILED, type(exc), str(exc))
    total, layouts = 0, []
    for out in tree_leaves(result):
        if not isinstance(out, _Tensor):
            continue
        layout = None
        if out.layout != torch.strided:  # sparse: at most every element, with its indices
            total += out.numel() * (out.element_size() + 8 * out.dim())
        elif (storage := out.untyped_storage())._cdata not in seen:
            seen.add(storage._cdata)
            total += storage.nbytes()
            layout = (out.shape, out.stride())
        layouts.append(layout)
    return _Sized(total, tuple(layouts))


@functools.lru_cache(maxsize=4096)
def _verdict(op: Op, key: tuple) -> Any:
    return _meta_bytes(op, _rebuild(key[0]), {} if key[1] is None else _rebuild(key[1]))


cache_info, cache_clear = _verdict.cache_info, _verdict.cache_clear


def _index(v: dict, op: Op) -> Any:
    indices: list[Any] = []
    for index in v["indices"]:
        if not (isinstance(index, _Tensor) and index.dtype in (torch.bool, torch.uint8)):
            indices.append(_rebuild(_describe(index, [0])))
        elif index.dim() == 0:
            return None  # a 0-d mask adds a dimension: not modelled, refused
        else:
            rows = torch.empty(int(torch.count_nonzero(index)), dtype=torch.long, device=_META)
            indices += [rows] * index.dim()
    return _meta_bytes(op, [_rebuild(_describe(v["self"], [0])), indices], {})


_UNIQUE = ("_unique2.default", "unique_dim.default", "unique_consecutive.default")
DATA_DEPENDENT_OPS = frozenset(("nonzero.default", "where.default", "index.Tensor",
    "index.Tensor_hacked_twin", "masked_select.default", "bincount.default",
    "linalg_lstsq.default", *_UNIQUE))  # fmt: skip


def _bound(op: Op, args: list, kwargs: dict) -> Any:
    """Bytes (or None: unknown) for an op whose output size depends on the data."""
    values = dict(zip([arg.name for arg in op._schema.arguments], args, strict=False)) | kwargs
    name, x = op.__name__, values.get("self", values.get("condition"))
    if name.startswith("index.Tensor"):
        return _index(values, op)
    if name in ("nonzero.default", "where.default"):
        return int(torch.count_nonzero(x)) * x.dim() * 8
    if name == "masked_select.default":
        return math.prod(torch.broadcast_shapes(x.shape, values["mask"].shape)) * x.element_size()
    if name == "linalg_lstsq.default":  # solution, residuals, rank, singular values
        a, b = x, values["b"]
        m, n = a.shape[-2:]
        vector = b.dim() == a.dim() - 1
        k = 1 if vector else b.shape[-1]
        b_batch = b.shape[: b.dim() - (1 if vector else 2)]
        batch = math.prod(torch.broadcast_shapes(a.shape[:-2], b_batch))
        return batch * ((n * k + k + min(m, n)) * a.element_size() + 8)
    if name == "bincount.default":
        return 8 * max(values.get("minlength", 0), int(x.max()) + 1 if x.numel() else 0)
    return x.numel() * (x.element_size() + 16) if name in _UNIQUE else None


def check_allocation(
    op: Op, args: list, kwargs: dict, cap_bytes: int, worker: str
) -> tuple | None:
    """Raise `OpNotAllowedError` if `op(*args, **kwargs)` would allocate over `cap_bytes`.
    Returns the layouts meta inference gives its new tensor outputs (see `_Sized`), if known."""
    if not _schema_facts(op)[0]:
        return None  # scalar, string and list ops (`add.int`, `split.str`): nothing to size
    budget = [KEY_BUDGET]
    try:
        key = (_describe(args, budget), _describe(kwargs, budget) if kwargs else None)
    except _Forwarded:
        return None
    verdict = _verdict(op, key) if budget[0] >= 0 else _verdict.__wrapped__(op, key)
    layouts = verdict.layouts if type(verdict) is _Sized else None
    if verdict is _DATA_DEPENDENT:  # run synchronously: the client gets the real metadata
        verdict = _bound(op, args, kwargs)
    nbytes = verdict.nbytes if type(verdict) is _Sized else verdict
    if type(nbytes) is tuple:  # (_FAILED, exception type, message)
        raise nbytes[1](nbytes[2]) if nbytes[1] in _ERRORS else RuntimeError(nbytes[2])
    if nbytes is None or nbytes is _DATA_DEPENDENT:
        message = f"{op.__name__}: {worker} cannot bound its data-dependent output size; refused"
        raise OpNotAllowedError(message, worker=worker)
    if nbytes > cap_bytes:
        raise OpNotAllowedError(
            f"{op.__name__} would allocate {nbytes:,} bytes ({nbytes / 2**30:.3g} GiB) at "
            f"{worker}, over its per-op cap of {cap_bytes:,} bytes; refused before running. "
            f"Work in smaller pieces, or start the worker with {ENV_VAR}=<bytes> to raise the cap",
            worker=worker,
        )
    return layouts


def warm_up() -> None:
    """Size one op on meta tensors now: the first meta run imports torch machinery for ~1 s,
    which a worker pays at startup rather than on a client's first command."""
    x = torch.ones(2)
    check_allocation(torch.ops.aten.add.Tensor, [x, x], {}, FIXED_CAP_BYTES, "warm-up")
