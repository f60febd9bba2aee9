"""The worker's store and executor, without sockets."""

from __future__ import annotations

import os

import pytest
import torch

from zsyft.errors import ObjectNotFoundError, OpNotAllowedError
from zsyft.runtime.allowlist import allowed_ops
from zsyft.runtime.executor import Executor, FailedInput
from zsyft.runtime.store import Failed, ObjectStore


def new_id() -> bytes:
    return os.urandom(16)


@pytest.fixture
def executor() -> Executor:
    return Executor(ObjectStore("bob"), "bob")


def test_runs_op_on_stored_objects_and_stores_result(executor):
    a, out = new_id(), new_id()
    executor.store.put(a, torch.tensor([1.0, 2.0]))
    executor.run("mul.Tensor", [a, a], {}, [out])
    assert torch.equal(executor.store.get(out), torch.tensor([1.0, 4.0]))


def test_in_place_op_writes_into_the_stored_tensor(executor):
    a = new_id()
    executor.store.put(a, torch.zeros(2))
    executor.run("add_.Tensor", [a, torch.ones(2)], {"alpha": 3}, [None])
    assert torch.equal(executor.store.get(a), torch.full((2,), 3.0))


@pytest.mark.parametrize("op", ["save.default", "load", "from_file.default", "manual_seed",
                                "set_rng_state", "add.out", "__class__", "", 5, None,
                                "_local_scalar_dense.default", "set_.source_Storage"])
def test_ops_off_the_allowlist_are_refused_before_running(executor, op):
    with pytest.raises(OpNotAllowedError, match="allowlist"):
        executor.run(op, [], {}, [])


def test_allowlist_has_no_out_variants_and_covers_training():
    ops = allowed_ops()
    assert not [name for name in ops if ".out" in name or name.endswith("_out")]
    needed_for_training = ("addmm.default", "mm.default", "threshold_backward.default",
                           "sum.dim_IntList", "add_.Tensor", "mse_loss.default",
                           "_log_softmax.default", "convolution.default")
    for needed in needed_for_training:
        assert needed in ops


def test_missing_object_names_the_worker(executor):
    with pytest.raises(ObjectNotFoundError, match="bob's store"):
        executor.run("neg.default", [new_id()], {}, [new_id()])


def test_failed_results_propagate_the_original_error(executor):
    out, later = new_id(), new_id()
    executor.fail([out], {"message": "index out of range", "op": "index.Tensor"})
    assert isinstance(executor.store.get(out), Failed)
    with pytest.raises(FailedInput, match="index out of range"):
        executor.run("neg.default", [out], {}, [later])


def test_ids_are_never_overwritten(executor):
    a = new_id()
    executor.store.put(a, torch.zeros(1))
    with pytest.raises(ValueError, match="already in use"):
        executor.run("neg.default", [a], {}, [a])


@pytest.mark.parametrize(("args", "kwargs", "ids"), [("x", {}, []), ([], [], []),
                                                      ([], {1: 2}, []), ([], {}, "x")])
def test_malformed_commands_are_type_errors(executor, args, kwargs, ids):
    with pytest.raises(TypeError):
        executor.run("neg.default", args, kwargs, ids)
