"""The allocation cap: ops whose outputs would be too big are refused before they run."""

from __future__ import annotations

import os
import time

import pytest
import torch

from zsyft.errors import OpNotAllowedError
from zsyft.runtime import allocation
from zsyft.runtime.allocation import DATA_DEPENDENT_OPS, check_allocation, default_cap_bytes
from zsyft.runtime.allowlist import allowed_ops
from zsyft.runtime.executor import Executor
from zsyft.runtime.store import ObjectStore

aten = torch.ops.aten
GiB = 1 << 30
CAP = 4 * GiB


def refused(op, args, kwargs=None, cap=CAP) -> str:
    """The refusal message (the test fails if the op is allowed)."""
    with pytest.raises(OpNotAllowedError) as info:
        check_allocation(op, args, kwargs or {}, cap, "bob")
    message = str(info.value)
    assert op.__name__ in message and "bob" in message
    return message


def allowed(op, args, kwargs=None, cap=CAP) -> None:
    check_allocation(op, args, kwargs or {}, cap, "bob")


def expanded(n: int, m: int) -> torch.Tensor:
    """An n x m view of 1 x m real elements (stride 0 along the first dimension)."""
    return torch.arange(float(m)).view(1, m).expand(n, m)


# -- hostile sizes, checked without running anything (so the sizes can be absurd) -------------
HUGE = {
    "new_full": (aten.new_full.default, [torch.ones(2), [10**6, 10**6], 1.0], {}),
    "new_zeros": (aten.new_zeros.default, [torch.ones(2), [10**12]], {}),
    "new_empty_cpu": (aten.new_empty.default, [torch.ones(2), [10**12]], {"device": "cpu"}),
    "new_empty_strided": (aten.new_empty_strided.default, [torch.ones(2), [2], [10**12]], {}),
    "full_like": (aten.full_like.default, [expanded(10**6, 10**5), 0.0], {}),
    "normal_factory": (aten.normal.float_float, [0.0, 1.0, [10**6, 10**6]], {"device": "cpu"}),
    "repeat": (aten.repeat.default, [torch.ones(4, 4), [10**4, 10**4]], {}),
    "tile": (aten.tile.default, [torch.ones(4, 4), [10**4, 10**4]], {}),
    "outer": (aten.outer.default, [torch.ones(10**5), torch.ones(10**5)], {}),
    "mm": (aten.mm.default, [expanded(10**5, 1), expanded(1, 10**5)], {}),
    "bmm": (aten.bmm.default, [torch.ones(1, 10**5, 1), torch.ones(1, 1, 10**5)], {}),
    "constant_pad_nd": (aten.constant_pad_nd.default, [torch.ones(2, 2), [10**6, 0, 10**6, 0]], {}),
    "upsample_nearest": (
        aten.upsample_nearest2d.vec, [torch.ones(1, 1, 4, 4), None, [1e5, 1e5]], {}),
    "upsample_bilinear": (
        aten.upsample_bilinear2d.vec, [torch.ones(1, 1, 4, 4), None, False, [1e5, 1e5]], {}),
    "diag_embed": (aten.diag_embed.default, [torch.ones(10**5)], {}),
    "im2col": (aten.im2col.default, [torch.ones(1, 1, 10**3, 10**3), [50, 50], [1, 1],
                                     [0, 0], [1, 1]], {}),
    "embedding_backward": (
        aten.embedding_dense_backward.default, [torch.ones(1, 8), torch.tensor([0]), 10**12,
                                                -1, False], {}),
    "clone_of_expand": (aten.clone.default, [torch.ones(1).expand(10**12)], {}),
    "reshape_copy": (aten.reshape.default, [expanded(10**6, 10**5), [-1]], {}),
    "as_strided_copy": (aten.as_strided_copy.default, [torch.ones(1), [10**6, 10**6], [0, 0]], {}),
    "cat": (aten.cat.default, [[torch.ones(1).expand(10**11)] * 8], {}),
}  # fmt: skip


@pytest.mark.parametrize("case", HUGE, ids=list(HUGE))
def test_huge_outputs_are_refused_naming_op_bytes_cap_and_remedy(case):
    op, args, kwargs = HUGE[case]
    message = refused(op, args, kwargs)
    assert f"{CAP:,}" in message and "ZSYFT_MAX_ALLOC_BYTES" in message and "bytes" in message


def test_views_of_huge_shapes_allocate_nothing():
    allowed(aten.expand.default, [torch.ones(1), [10**12]])
    allowed(aten.as_strided.default, [torch.ones(1), [10**6, 10**6], [0, 0]])
    allowed(aten.reshape.default, [torch.ones(1, 1).expand(10**6, 10**6), [-1]])  # stays a view
    allowed(aten.permute.default, [expanded(10**6, 10**5), [1, 0]])
    allowed(aten.add_.Tensor, [torch.ones(3), torch.ones(3)])  # in place
    refused(aten.clone.default, [torch.ones(1).expand(10**12)])


@pytest.mark.parametrize(
    "op, args",
    [
        (aten.add.Tensor, [torch.ones(64, 32), torch.ones(32)]),
        (aten.mm.default, [torch.ones(64, 32), torch.ones(32, 16)]),
        (aten.convolution.default, [torch.ones(8, 3, 32, 32), torch.ones(16, 3, 3, 3), None,
                                    [1, 1], [1, 1], [1, 1], False, [0, 0], 1]),
        (aten.relu.default, [torch.ones(1000, 1000)]),
        (aten.sum.dim_IntList, [torch.ones(10, 10), [1]]),
        (aten.cat.default, [[torch.ones(3), torch.ones(4)]]),
        (aten.new_zeros.default, [torch.ones(2), [1000, 1000]]),
        (aten.repeat.default, [torch.ones(4, 4), [10, 10]]),
        (aten.nonzero.default, [torch.ones(1000)]),
        (aten._unique2.default, [torch.arange(100), True, True, True]),
        (aten.index.Tensor, [torch.ones(5, 3), [torch.tensor([True, False, True, True, False])]]),
        (aten.bincount.default, [torch.tensor([1, 5, 3])]),
        (aten.masked_select.default, [torch.ones(4, 1), torch.ones(1, 4, dtype=torch.bool)]),
        (aten.where.default, [torch.ones(3, 3)]),
    ],
)
def test_normal_ops_at_normal_sizes_pass(op, args):
    allowed(op, args)
    out = op(*args)  # and the real op agrees they are small
    outs = out if isinstance(out, tuple | list) else [out]
    assert sum(t.numel() * t.element_size() for t in outs if isinstance(t, torch.Tensor)) < CAP


def test_data_dependent_ops_are_bounded_by_what_they_would_really_allocate():
    refused(aten.bincount.default, [torch.tensor([2**40])])  # 1 element in, 8 TiB out
    refused(aten.bincount.default, [torch.tensor([1]), None, 10**12])
    refused(aten.masked_select.default, [torch.ones(10**5, 1), torch.ones(1, 10**5).bool()])
    # nonzero: count_nonzero * ndim * 8 bytes, exactly
    allowed(aten.nonzero.default, [torch.zeros(100, 2)], cap=0)
    allowed(aten.nonzero.default, [torch.ones(100, 2)], cap=100 * 2 * 2 * 8)
    refused(aten.nonzero.default, [torch.ones(100, 2)], cap=100 * 2 * 2 * 8 - 1)
    refused(aten.where.default, [torch.ones(100, 2)], cap=100)
    # unique with inverse and counts: a bool input grows 17 times
    refused(aten._unique2.default, [torch.ones(1000, dtype=torch.bool), True, True, True],
            cap=16 * 1000)
    # boolean-mask indexing: the selected rows, exactly
    x, mask = torch.ones(10, 1000), torch.tensor([True] * 3 + [False] * 7)
    allowed(aten.index.Tensor, [x, [mask]], cap=3 * 1000 * 4)
    refused(aten.index.Tensor, [x, [mask]], cap=3 * 1000 * 4 - 1)
    assert "cannot bound" in refused(aten.index.Tensor, [x, [torch.tensor(True)]])
    # least squares: an n x k solution from an m x n system, m = 1 here
    allowed(aten.linalg_lstsq.default, [torch.rand(3, 2), torch.rand(3, 4)])
    refused(aten.linalg_lstsq.default, [torch.ones(1, 10**6), torch.ones(1, 10**4)])


def test_every_allowlisted_op_without_a_meta_kernel_has_a_bound():
    has_kernel = torch._C._dispatch_has_kernel_for_dispatch_key
    keys = ("Meta", "CompositeImplicitAutograd", "CompositeExplicitAutograd",
            "CompositeExplicitAutogradNonFunctional")  # fmt: skip
    missing = set()
    for name, op in allowed_ops().items():
        returns_tensor = any("Tensor" in str(ret.type) for ret in op._schema.returns)
        try:
            if returns_tensor and not any(has_kernel(op.name(), key) for key in keys):
                missing.add(name)
        except RuntimeError:  # a TorchScript builtin (`split.default`, `copy_.int`, scalar
            continue  # ops): no dispatcher entry of its own, it calls aten ops that have one
    assert missing <= DATA_DEPENDENT_OPS, missing - DATA_DEPENDENT_OPS


def _sample(argument: torch._C.Argument, tensor: torch.Tensor) -> object:
    kind = str(argument.type)
    samples = {"Tensor": tensor, "List[Tensor]": [tensor, tensor], "int": 1, "SymInt": 1,
               "List[Optional[Tensor]]": [tensor], "List[int]": [2, 3], "List[SymInt]": [2, 3],
               "float": 0.5, "Scalar": 1, "bool": False, "str": "sum"}  # fmt: skip
    if kind in samples:
        return samples[kind]
    if kind.startswith("Optional"):
        return None
    raise KeyError(kind)


def test_only_the_bounded_ops_have_data_dependent_sizes_on_sample_arguments():
    """Every allowlisted overload on meta tensors of four kinds (small, so nothing is at risk)."""
    unbounded = set()
    for name, op in allowed_ops().items():
        for tensor in (torch.rand(2, 3), torch.ones(2, 3, dtype=torch.long),
                       torch.ones(2, 3, dtype=torch.bool), torch.rand(2, 3, 4, 4)):
            required = [a for a in op._schema.arguments if not a.has_default_value()]
            try:
                args = [_sample(a, tensor.to("meta")) for a in required if not a.kwarg_only]
                kwargs = {a.name: _sample(a, tensor.to("meta")) for a in required if a.kwarg_only}
            except KeyError:  # an argument type we do not sample (Dict, generic lists, ...)
                break
            try:
                op(*args, **kwargs)
            except NotImplementedError:
                unbounded.add(name)
            except Exception:
                pass
    assert unbounded <= DATA_DEPENDENT_OPS, unbounded - DATA_DEPENDENT_OPS
    assert {"nonzero.default", "_unique2.default", "masked_select.default"} <= unbounded


def test_meta_never_runs_for_real_factory_arguments_are_keyword_only():
    for name, op in allowed_ops().items():
        arguments = op._schema.arguments
        factory = [a for a in arguments if a.name in ("device", "pin_memory")]
        assert all(a.kwarg_only for a in factory), name
        if any("Tensor" in str(ret.type) for ret in op._schema.returns):
            assert factory or any("Tensor" in str(a.type) for a in arguments), name


def test_meta_errors_are_raised_without_running_the_op():
    with pytest.raises(RuntimeError):
        check_allocation(aten.add.Tensor, [torch.ones(3), torch.ones(4)], {}, CAP, "bob")
    # this one segfaults torch 2.13's CPU kernel; the check must refuse it before it runs
    with pytest.raises(AssertionError, match="running_mean"):
        check_allocation(aten._native_batch_norm_legit.no_stats,
                         [torch.ones(2, 3), None, None, False, 0.1, 1e-5], {}, CAP, "bob")


def test_pointer_arguments_are_left_to_the_worker_holding_the_data():
    class Remote(torch.Tensor):
        pass

    ptr = torch.ones(2).as_subclass(Remote)
    allowed(aten.new_full.default, [ptr, [10**6, 10**6], 1.0])


def test_cache_hits_for_same_metadata_and_keeps_1_and_1_0_apart():
    allocation.cache_clear()
    x = torch.ones(64, 32)
    allowed(aten.mul.Tensor, [x, x])
    allowed(aten.mul.Tensor, [torch.zeros(64, 32), torch.rand(64, 32)])  # other data, same key
    info = allocation.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    n = 10**6  # int8 + 1 stays int8 (1 MB); int8 + 1.0 is float32 (4 MB), though 1 == 1.0
    small = torch.ones(n, dtype=torch.int8)
    allowed(aten.add.Tensor, [small, 1], cap=2 * n)
    refused(aten.add.Tensor, [small, 1.0], cap=2 * n)
    refused(aten.add.Tensor, [small, 1 + 0j], cap=2 * n)
    allowed(aten.add.Tensor, [small, True], cap=2 * n)
    nan = float("nan")
    allowed(aten.add.Tensor, [x, nan])
    allowed(aten.add.Tensor, [x, float("nan")])  # NaN keys hit too
    assert allocation.cache_info().hits == 2
    rounds = 20000
    start = time.perf_counter()
    for _ in range(rounds):
        check_allocation(aten.mul.Tensor, [x, x], {}, CAP, "bob")
    per_check = (time.perf_counter() - start) / rounds * 1e6
    print(f"cached check_allocation(mul.Tensor, 2 tensors): {per_check:.2f} us")
    assert allocation.cache_info().hits == 2 + rounds


def test_oversized_keys_are_checked_but_not_cached():
    allocation.cache_clear()
    tensors = [torch.ones(2)] * 200
    allowed(aten.cat.default, [tensors])
    refused(aten.cat.default, [[torch.ones(1).expand(10**11)] * 200])
    assert allocation.cache_info().currsize == 0


def test_cap_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("ZSYFT_MAX_ALLOC_BYTES", raising=False)
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert default_cap_bytes() == min(4 * GiB, max(physical // 4, GiB))
    monkeypatch.setenv("ZSYFT_MAX_ALLOC_BYTES", "12_345")
    assert default_cap_bytes() == 12345
    assert Executor(ObjectStore("bob"), "bob").max_alloc_bytes == 12345
    for bad in ("-1", "0", "4GiB", "1e9"):
        monkeypatch.setenv("ZSYFT_MAX_ALLOC_BYTES", bad)
        with pytest.raises(ValueError, match="ZSYFT_MAX_ALLOC_BYTES"):
            default_cap_bytes()


def test_executor_refuses_before_running_with_no_side_effects():
    executor = Executor(ObjectStore("bob"), "bob")
    executor.max_alloc_bytes = 1 << 20  # small sizes: harmless even if the check were broken
    x, view, out = os.urandom(16), os.urandom(16), os.urandom(16)
    executor.store.put(x, torch.ones(4, 4))
    executor.run("expand.default", [x, [20000, 4, 4]], {}, [view])  # a view: 0 bytes
    rng = torch.get_rng_state()
    for op, args in [
        ("repeat.default", [x, [300, 300]]),
        ("clone.default", [view]),
        ("normal.float_float", [0.0, 1.0, [1000, 1000]]),
        ("bernoulli.p", [view, 0.5]),
        ("rand_like.default", [view]),
    ]:
        with pytest.raises(OpNotAllowedError, match=f"{op} would allocate"):
            executor.run(op, args, {}, [out])
    assert torch.equal(torch.get_rng_state(), rng)  # no random op ran
    assert len(executor.store) == 2 and out not in executor.store
    executor.run("repeat.default", [x, [2, 2]], {}, [out])
    assert executor.store.get(out).shape == (8, 8)
