"""What a user reaching for the wrong tool is told: errors that name their function and the fix
(losses and layers without an encrypted form, optimizers zsyft cannot step, a model left
plain, two encodings, format specs) and the warning before a worker with objects is replaced."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim

import zsyft as sy
from zsyft.errors import PointerUsageError, UnsupportedOpError


def _shared(values, bob, alice, james, **options):
    return torch.tensor(values).fix_precision(**options).share(
        bob, alice, crypto_provider=james, requires_grad=True)


def _encrypted_model(bob, alice, james):
    torch.manual_seed(0)
    return nn.Linear(2, 1).fix_precision().share(bob, alice, crypto_provider=james,
                                                 requires_grad=True)


@pytest.mark.parametrize("make, match", [
    (lambda p: optim.Adam(p, lr=0.1), r"Adam's step divides by .* use optim\.SGD"),
    (lambda p: optim.Rprop(p, lr=0.1), r"Rprop's step assigns through masks .* use optim\.SGD"),
], ids=["adam", "rprop"])
def test_an_optimizer_zsyft_cannot_step_is_refused_at_step_without_fix_precision(
    bob, alice, james, make, match
):
    model = _encrypted_model(bob, alice, james)
    opt = make(model.parameters())  # no .fix_precision(): the step itself explains
    data = _shared([[1.0, 2.0]], bob, alice, james)
    model(data).sum().backward()
    with pytest.raises(TypeError, match=match):
        opt.step()
    with pytest.raises(TypeError, match=match):
        make(model.parameters()).fix_precision()
    plain = nn.Linear(2, 1)
    plain_opt = make(plain.parameters())
    plain(torch.ones(1, 2)).sum().backward()
    plain_opt.step()  # nothing encrypted: torch's own step


@pytest.mark.parametrize("call, match", [
    (lambda x: F.cross_entropy(x, torch.tensor([0])), r"cross_entropy.*exp and log.*F\.mse_loss"),
    (lambda x: F.softmax(x, dim=1), r"softmax .*exp and log.*argmax"),
    (lambda x: F.dropout(x, 0.5, training=True), r"dropout .*model\.eval\(\)"),
    (lambda x: F.smooth_l1_loss(x, x), r"smooth_l1_loss .*F\.mse_loss or F\.l1_loss"),
    (lambda x: F.gelu(x), r"gelu .*use F\.relu"),
], ids=["cross_entropy", "softmax", "dropout", "smooth_l1", "gelu"])
def test_a_function_without_an_encrypted_form_is_named_with_what_to_do_instead(
    bob, alice, james, call, match
):
    x = _shared([[0.5, -1.0]], bob, alice, james)
    with pytest.raises(UnsupportedOpError, match=match):
        call(x)


def test_a_plain_model_trained_on_shared_data_is_told_to_share_the_model(bob, alice, james):
    torch.manual_seed(0)
    model = nn.Linear(2, 1)  # left plain: its gradients come out shared
    opt = optim.SGD(model.parameters(), lr=0.1)
    data = _shared([[1.0, 2.0]], bob, alice, james)
    target = _shared([[1.0]], bob, alice, james)
    ((model(data) - target) ** 2).sum().backward()
    with pytest.raises(UnsupportedOpError, match=r"share the model too, model\.fix_precision"):
        opt.step()


def test_data_shared_without_fix_precision_is_told_to_fix_its_precision_first(
    bob, alice, james
):
    model = _encrypted_model(bob, alice, james)
    data = torch.tensor([[1, 2]]).share(bob, alice, crypto_provider=james)
    with pytest.raises(UnsupportedOpError, match=r"share x\.fix_precision\(\) to encode it"):
        model(data)


def test_a_matmul_of_shapes_that_do_not_fit_raises_runtime_error_as_torch_does(
    bob, alice, james
):
    x = _shared([[1.0] * 5] * 4, bob, alice, james)
    w = _shared([[1.0]] * 3, bob, alice, james)
    with pytest.raises(RuntimeError, match=r"\(4, 5\) and \(3, 1\)"):
        x @ w


def test_a_format_spec_on_a_value_that_is_not_here_says_how_to_get_it(bob, alice, james):
    pointer = torch.tensor(1.5).send(bob)
    shared = torch.tensor(1.5).fix_precision().share(bob, alice, crypto_provider=james)
    fixed = torch.tensor(1.5).fix_precision()
    for value, advice in ((pointer, r"\.get\(\)"), (shared, r"\.get\(\)\.float_precision\(\)"),
                          (fixed, r"\.float_precision\(\)")):
        assert f"{value}" == str(value)
        with pytest.raises(PointerUsageError, match=rf"with '\.3f' needs its value; call {advice}"):
            f"{value:.3f}"
    assert f"{shared.get().float_precision():.3f}" == "1.500"


def test_replacing_a_worker_that_holds_our_objects_warns_first(hook):
    first = sy.VirtualWorker(hook, id="guidance_w")
    second = third = None
    try:
        kept = torch.tensor([1.0, 2.0]).send(first)
        with pytest.warns(UserWarning, match=r"holds 1 object.*lost with it"):
            second = sy.VirtualWorker(hook, id="guidance_w")
        with pytest.raises(sy.WorkerUnavailableError):
            kept.get()
        del kept
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # holds nothing of ours: replaced without a word
            third = sy.VirtualWorker(hook, id="guidance_w")
    finally:
        sy.local_worker.workers.pop("guidance_w", None)
        for worker in (first, second, third):
            if worker is not None:
                worker.close()
