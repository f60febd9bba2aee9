"""PySyft 0.2's federated-learning idioms (tutorials Parts 2 and 4): a model sent to the data,
trained there, fetched back; gradients travelling with tensors; `move`.

In PySyft the optimizer is made once, before the loop, and `model.send(...)`/`model.get()`
change the model's parameters in place: the optimizer keeps updating the same objects.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn, optim

import zsyft as sy
from tests.integration.conftest import assert_nothing_left, settle


@pytest.fixture(autouse=True)
def nothing_left_behind(bob, alice, james):
    yield
    assert_nothing_left(bob, alice, james)


def _toy_data():
    data = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1.0]])
    target = torch.tensor([[0], [0], [1], [1.0]])
    return data, target


def test_part2_loop_with_the_optimizer_made_before_send_trains_like_plaintext(bob, alice):
    data, target = _toy_data()
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    plain = copy.deepcopy(model)
    weight = model.weight
    remote = [(data[:2].send(bob), target[:2].send(bob)),
              (data[2:].send(alice), target[2:].send(alice))]
    local = [(data[:2], target[:2]), (data[2:], target[2:])]
    opt = optim.SGD(params=model.parameters(), lr=0.1)
    plain_opt = optim.SGD(params=plain.parameters(), lr=0.1)
    for _ in range(4):
        for (x, y), (lx, ly) in zip(remote, local, strict=True):
            model.send(x.location)
            assert model.weight is weight and model.weight.location is x.location
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).sum()
            loss.backward()
            opt.step()
            model.get()
            plain_opt.zero_grad()
            plain_loss = ((plain(lx) - ly) ** 2).sum()
            plain_loss.backward()
            plain_opt.step()
            assert loss.get().item() == pytest.approx(plain_loss.item(), abs=1e-5)
    assert model.weight is weight and not isinstance(weight, sy.PointerTensor)
    torch.testing.assert_close(model.weight.data, plain.weight.data)
    torch.testing.assert_close(model.bias.data, plain.bias.data)


def test_parameters_keep_their_identity_through_every_conversion(bob, alice, james):
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    before = list(model.parameters())
    values = [p.detach().clone() for p in before]
    model.send(bob).send(alice)
    model.get().get()
    model.move(bob)
    model.move(alice)
    model.get()
    model.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
    model.get().float_precision()
    assert all(p is q for p, q in zip(model.parameters(), before, strict=True))
    for p, v in zip(before, values, strict=True):
        torch.testing.assert_close(p.data, v, atol=1e-3, rtol=0)


def test_tied_parameters_stay_tied(bob):
    first, second = nn.Linear(2, 2), nn.Linear(2, 2)
    second.weight = first.weight
    model = nn.Sequential(first, second)
    model.send(bob)
    assert model[0].weight is model[1].weight and model[0].weight.location is bob
    model.get()
    assert model[0].weight is model[1].weight and not isinstance(model[0].weight,
                                                                 sy.PointerTensor)


def test_a_parameter_with_a_live_view_is_replaced_with_a_warning(bob):
    model = nn.Linear(2, 1)
    view = model.weight.view(-1)  # holds the parameter's data: it cannot change in place
    with pytest.warns(UserWarning, match="make the optimizer afterwards"):
        model.send(bob)
    assert isinstance(model.weight, sy.PointerTensor) and not isinstance(view, sy.PointerTensor)
    model.get()


def test_an_rnn_sent_with_its_optimizer_trains(bob):
    torch.manual_seed(0)
    rnn = nn.GRU(3, 2, batch_first=True)
    plain = copy.deepcopy(rnn)
    opt, plain_opt = optim.SGD(rnn.parameters(), lr=0.5), optim.SGD(plain.parameters(), lr=0.5)
    x = torch.randn(2, 4, 3)
    rx = x.send(bob)
    for _ in range(2):
        rnn.send(bob)
        opt.zero_grad()
        rnn(rx)[0].sum().backward()
        opt.step()
        rnn.get()
        plain_opt.zero_grad()
        plain(x)[0].sum().backward()
        plain_opt.step()
    for p, q in zip(rnn.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.data, q.data)


def test_a_gradient_travels_with_send_move_remote_send_and_get(bob, alice):
    t = torch.tensor([1.0, 2.0], requires_grad=True)
    (t * 5).sum().backward()
    back = t.send(bob).get()
    torch.testing.assert_close(back.grad, torch.tensor([5.0, 5.0]))

    p = torch.tensor([1.0, 2.0], requires_grad=True).send(bob)
    (p * 3).sum().backward()
    assert p.grad.location is bob
    p.move(alice)
    assert p.location is alice and p.grad.location is alice
    p.remote_send(bob)
    assert len(bob._objects) == 2  # the tensor and its gradient went on to bob
    p.remote_get()
    torch.testing.assert_close(p.get().grad, torch.tensor([3.0, 3.0]))


def test_move_changes_a_sent_pointer_in_place_and_to_me_is_get(bob, alice):
    x = torch.tensor([1.0, 2.0]).send(bob)
    same = x.move(alice)
    assert same is x and x.location is alice
    assert len(bob._objects) == 0 and len(alice._objects) == 1
    back = x.move(sy.local_worker)
    assert not isinstance(back, sy.PointerTensor)
    torch.testing.assert_close(back, torch.tensor([1.0, 2.0]))


def test_sending_to_several_workers_at_once_is_refused_with_what_to_use(bob, alice):
    with pytest.raises(TypeError, match=r"share\(bob, alice"):
        torch.ones(2).send(bob, alice)
    with pytest.raises(TypeError, match="send\\(\\) takes one worker"):
        nn.Linear(1, 1).send(bob, alice)
    assert len(bob._objects) == 0


def test_a_model_left_here_and_applied_to_remote_data_says_to_send_it(bob):
    """Forgetting `model.send(...)`: its parameters would get remote gradients that no
    optimizer here can apply; refused at the forward pass, naming what to do."""
    model = nn.Linear(3, 2)
    x = torch.randn(4, 3).send(bob)
    with pytest.raises(sy.PointerUsageError, match=r"model\.send\(x\.location\)"):
        model(x)
    assert model.weight.grad is None
    with torch.no_grad():  # evaluation needs no gradient: the weights travel as operands
        assert model(x).get().shape == (4, 2)
    model.send(bob)
    model(x).sum().backward()
    optim.SGD(model.parameters(), lr=0.1).step()
    model.get()
    del x


def test_model_get_takes_the_parameters_home_while_a_loss_still_holds_them(bob):
    model = nn.Linear(2, 1)
    x = torch.ones(1, 2).send(bob)
    model.send(bob)
    loss = model(x).sum()
    loss.backward()
    model.get()
    settle(bob)
    assert len(bob._objects) == 2, bob._objects  # x and the loss: no copy of a parameter
    assert loss.get().item() == pytest.approx((model(torch.ones(1, 2))).sum().item())


def test_model_get_after_a_failed_training_step_raises_once_and_keeps_the_model(bob):
    """A bad batch (a label out of range) fails at the worker; nothing waits for it, so
    `model.get()` raises its error, and brings the model home when run again: the weights
    of the good steps, no gradient from the failed backward (as torch leaves none)."""
    torch.manual_seed(0)
    model = nn.Linear(3, 3)
    plain = copy.deepcopy(model)
    data = torch.randn(4, 3)
    good, bad = torch.tensor([0, 1, 2, 1]), torch.tensor([0, 1, 2, 9])
    opt, plain_opt = optim.SGD(model.parameters(), lr=0.1), optim.SGD(plain.parameters(), lr=0.1)
    for target in (good, good):
        plain_opt.zero_grad()
        nn.functional.cross_entropy(plain(data), target).backward()
        plain_opt.step()
    x = data.send(bob)
    model.send(bob)
    for target in (good, bad, good):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), target.send(bob))
        loss.backward()
        opt.step()
    del loss
    with pytest.raises(IndexError, match="out of bounds"):
        model.get()
    model.get()
    assert not isinstance(model.weight, sy.PointerTensor)
    torch.testing.assert_close(model.weight.data, plain.weight.data)
    torch.testing.assert_close(model.bias.data, plain.bias.data)
    del x


def test_an_optimizer_whose_state_stayed_at_another_worker_is_named_in_the_error(bob, alice):
    """Momentum lives where the optimizer first stepped: training at another worker with the
    same optimizer is refused with a message that names the optimizer's state."""
    model = nn.Linear(2, 1)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for worker in (bob, alice):
        model.send(worker)
        opt.zero_grad()
        model(torch.ones(1, 2).send(worker)).sum().backward()
        if worker is alice:
            with pytest.raises(sy.PointerUsageError, match="optimizer's step"):
                opt.step()
        else:
            opt.step()
        model.get()
    opt.state.clear()
    a, b = torch.ones(2).send(bob), torch.ones(2).send(alice)
    with pytest.raises(sy.PointerUsageError, match="move one") as refused:
        a += b  # the same refusal outside an optimizer says nothing about optimizers
    assert "optimizer" not in str(refused.value)
    del a, b, refused
    settle(bob, alice)


@pytest.mark.parametrize("make", [lambda p: optim.Adam(p, lr=0.05, amsgrad=True),
                                  lambda p: optim.Adamax(p, lr=0.05)],
                         ids=["adam-amsgrad", "adamax"])
def test_optimizers_that_write_with_out_train_like_plaintext(bob, make):
    """`torch.maximum(a, b, out=a)` in their steps runs as maximum and a copy into `a`."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    plain = copy.deepcopy(model)
    x, y = torch.randn(3, 4), torch.randn(3, 2)
    opt, plain_opt = make(model.parameters()), make(plain.parameters())
    model.send(bob)
    remote_x, remote_y = x.send(bob), y.send(bob)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(model(remote_x), remote_y).backward()
        opt.step()
        plain_opt.zero_grad()
        nn.functional.mse_loss(plain(x), y).backward()
        plain_opt.step()
    model.get()
    torch.testing.assert_close(model.weight.data, plain.weight.data)
    opt.state.clear()
    del remote_x, remote_y


def test_split_learning_moves_the_activation_and_its_gradient_back(bob, alice):
    """Half a network at bob, half at alice: the activation moves from bob to alice, and
    `backward()` at alice reaches bob's half, as `.to()` would carry it in torch."""
    torch.manual_seed(0)
    first, second = nn.Linear(3, 4), nn.Linear(4, 1)
    plain_first, plain_second = copy.deepcopy(first), copy.deepcopy(second)
    data, target = torch.randn(5, 3), torch.randn(5, 1)
    ((plain_second(torch.relu(plain_first(data))) - target) ** 2).sum().backward()
    first.send(bob)
    second.send(alice)
    hidden = torch.relu(first(data.send(bob)))
    moved = hidden.move(alice)
    assert moved.location is alice and hidden.location is bob  # the graph keeps the original
    loss = ((second(moved) - target.send(alice)) ** 2).sum()
    loss.backward()
    first.get()
    second.get()
    torch.testing.assert_close(first.weight.grad, plain_first.weight.grad)
    torch.testing.assert_close(second.weight.grad, plain_second.weight.grad)
    local = torch.ones(2, requires_grad=True)
    sent = (local * 3).send(bob)  # a local activation sent: its gradient comes home
    (sent * sent).sum().backward()
    torch.testing.assert_close(local.grad, torch.full((2,), 18.0))
    with pytest.raises(sy.PointerUsageError, match=r"\.move\(alice\)"):
        (sent * 2).send(alice)  # a chain would cut the graph
    del hidden, moved, loss, sent


def test_a_failed_step_in_a_send_train_get_loop_is_raised_by_that_steps_model_get(bob):
    """PySyft's loop (send, train, get per batch) with a bad label in one batch: that
    batch's `model.get()` raises the error, as torch raises at the bad line, and once; run
    again it brings the model home (no gradient from the failed backward)."""
    torch.manual_seed(1)
    model = nn.Linear(4, 3)
    opt = optim.SGD(model.parameters(), lr=0.1)
    data = torch.randn(6, 4).send(bob)
    labels = [torch.tensor([0, 1, 2, 1, 0, 2]), torch.tensor([0, 1, 7, 1, 0, 2])]
    raised = []
    for target in labels:
        model.send(bob)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(data), target.send(bob))
        loss.backward()
        opt.step()
        try:
            model.get()
        except IndexError as error:
            raised.append(error)
            model.get()
    assert len(raised) == 1 and "out of bounds" in str(raised[0])
    assert model.weight.grad is None and not isinstance(model.weight, sy.PointerTensor)
    del loss, data
