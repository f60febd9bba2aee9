"""Encrypted training across worker processes tracks plaintext training (same initial weights)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim

from tests.integration.conftest import settle


@pytest.mark.timeout(300)
def test_three_layer_network_trains_like_plaintext(bob, alice, james):
    torch.manual_seed(7)
    data = torch.rand(16, 4)
    target = (data.sum(dim=1, keepdim=True) > 2).float()
    plain = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 1))
    model = copy.deepcopy(plain)
    plain_opt = optim.SGD(plain.parameters(), lr=0.05)

    kwargs = {"crypto_provider": james, "requires_grad": True}
    shared_data = data.fix_precision().share(bob, alice, **kwargs)
    shared_target = target.fix_precision().share(bob, alice, **kwargs)
    model.fix_precision().share(bob, alice, **kwargs)
    opt = optim.SGD(model.parameters(), lr=0.05).fix_precision()

    encrypted, plaintext = [], []
    for _ in range(8):
        opt.zero_grad()
        loss = ((model(shared_data) - shared_target) ** 2).sum()
        loss.backward()
        opt.step()
        encrypted.append(loss.get().float_precision().item())

        plain_opt.zero_grad()
        plain_loss = F.mse_loss(plain(data), target, reduction="sum")
        plain_loss.backward()
        plain_opt.step()
        plaintext.append(plain_loss.item())

    for step, (enc, ref) in enumerate(zip(encrypted, plaintext, strict=True)):
        assert abs(enc - ref) <= 0.05 + 0.01 * ref, f"iteration {step}: {enc} vs {ref}"
    assert encrypted[-1] < encrypted[0]
    model.get().float_precision()
    for got, want in zip(model.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(got.detach(), want.detach(), atol=0.02, rtol=0)
    del shared_data, shared_target, loss, opt
    settle(bob, alice, james)


def train_side_by_side(parties, plain, criterion, data, target, lr, steps, param_atol):
    """Train `plain` and an encrypted copy of it (same initial weights) on `data`; each
    iteration's loss must agree within 0.02, and so must the final weights within
    `param_atol`."""
    bob, alice, james = parties
    model = copy.deepcopy(plain)
    plain_opt = optim.SGD(plain.parameters(), lr=lr)
    kwargs = {"crypto_provider": james, "requires_grad": True}
    shared_data = data.fix_precision().share(bob, alice, **kwargs)
    shared_target = target.fix_precision().share(bob, alice, **kwargs)
    model.fix_precision().share(bob, alice, **kwargs)
    opt = optim.SGD(model.parameters(), lr=lr).fix_precision()
    for step in range(steps):
        opt.zero_grad()
        loss = criterion(model(shared_data), shared_target)
        loss.backward()
        opt.step()
        plain_opt.zero_grad()
        plain_loss = criterion(plain(data), target)
        plain_loss.backward()
        plain_opt.step()
        got, want = loss.get().float_precision().item(), plain_loss.item()
        assert abs(got - want) <= 0.02, f"iteration {step}: {got} vs {want}"
    model.get().float_precision()
    for got, want in zip(model.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(got.detach(), want.detach(), atol=param_atol, rtol=0)
    del shared_data, shared_target, loss, opt
    settle(bob, alice, james)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("criterion", [nn.MSELoss(), nn.L1Loss()], ids=["mse", "l1"])
def test_torch_losses_and_in_place_relu_train_like_plaintext(bob, alice, james, criterion):
    """`nn.MSELoss()` / `nn.L1Loss()` (mean) and `nn.ReLU(inplace=True)`, as a PyTorch user
    writes them."""
    torch.manual_seed(11)
    data = torch.randn(16, 3)
    target = data @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    plain = nn.Sequential(nn.Linear(3, 8), nn.ReLU(inplace=True), nn.Linear(8, 1))
    train_side_by_side((bob, alice, james), plain, criterion, data, target, lr=0.05, steps=5,
                       param_atol=0.02)


@pytest.mark.timeout(300)
def test_sigmoid_and_tanh_networks_train_like_plaintext(bob, alice, james):
    """A tanh hidden layer and a sigmoid output, their approximations included."""
    torch.manual_seed(12)
    data = torch.randn(16, 3)
    target = (data @ torch.tensor([[1.0], [-2.0], [0.5]]) > 0).float()
    plain = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1), nn.Sigmoid())
    train_side_by_side((bob, alice, james), plain, F.mse_loss, data, target, lr=0.5, steps=4,
                       param_atol=0.03)


@pytest.mark.timeout(300)
def test_convolutional_network_trains_like_plaintext(bob, alice, james):
    """Conv2d (stride, padding, bias), ReLU, average pooling and a linear head, trained on
    shared images: the convolution's forward and both its gradients are Beaver products."""
    torch.manual_seed(5)
    data = torch.randn(8, 2, 6, 6)
    target = data[:, 0, 1:4, 1:4].sum((1, 2)).unsqueeze(1) / 3  # loss 1.27 -> 0.56
    plain = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(3, 4, 2, stride=2, bias=False), nn.Flatten(), nn.Linear(4, 1),
    )  # fmt: skip
    train_side_by_side((bob, alice, james), plain, F.mse_loss, data, target, lr=0.2, steps=4,
                       param_atol=0.02)  # each parameter moves 0.07-0.56


@pytest.mark.timeout(300)
def test_convolutional_network_with_max_pooling_trains_like_plaintext(bob, alice, james):
    """Conv2d, ReLU, max pooling (its backward sends each window's gradient to the shared
    maximum) and a linear head, trained on shared images."""
    torch.manual_seed(7)
    data = torch.randn(6, 1, 8, 8)
    target = data[:, 0, 2:6, 2:6].mean((1, 2)).unsqueeze(1)
    plain = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 1),
    )  # fmt: skip
    train_side_by_side((bob, alice, james), plain, F.mse_loss, data, target, lr=0.1, steps=4,
                       param_atol=0.02)


@pytest.mark.timeout(300)
def test_leaky_relu_and_relu6_networks_train_like_plaintext(bob, alice, james):
    """LeakyReLU keeps its sign bit for the backward pass; ReLU6 is a hardtanh."""
    torch.manual_seed(9)
    data = torch.randn(16, 3)
    target = data @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    plain = nn.Sequential(nn.Linear(3, 6), nn.LeakyReLU(0.1), nn.Linear(6, 4),
                          nn.ReLU6(inplace=True), nn.Linear(4, 1))
    train_side_by_side((bob, alice, james), plain, F.mse_loss, data, target, lr=0.05, steps=4,
                       param_atol=0.02)



class _TokenModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding, self.cell, self.head = nn.Embedding(6, 3), nn.GRUCell(3, 2), nn.Linear(2, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.cell(self.embedding(tokens)))


@pytest.mark.timeout(300)
def test_an_embedding_and_a_gru_cell_train_like_plaintext(bob, alice, james):
    """nn.Embedding looks up public token ids in a shared table (and its backward adds the
    shared gradient rows back), and nn.GRUCell splits its gates with unsafe_split: both are
    share-by-share ops."""
    torch.manual_seed(3)
    plain = _TokenModel()
    model = copy.deepcopy(plain)
    tokens, target = torch.tensor([0, 3, 5, 3]), torch.tensor([[0.5], [-0.2], [0.1], [0.3]])
    kwargs = {"crypto_provider": james, "requires_grad": True}
    model.fix_precision().share(bob, alice, **kwargs)
    shared_target = target.fix_precision().share(bob, alice, **kwargs)
    opt = optim.SGD(model.parameters(), lr=0.1).fix_precision()
    plain_opt = optim.SGD(plain.parameters(), lr=0.1)
    for step in range(3):
        opt.zero_grad()
        loss = ((model(tokens) - shared_target) ** 2).sum()
        loss.backward()
        opt.step()
        plain_opt.zero_grad()
        plain_loss = ((plain(tokens) - target) ** 2).sum()
        plain_loss.backward()
        plain_opt.step()
        got, want = loss.get().float_precision().item(), plain_loss.item()
        assert abs(got - want) <= 0.02, f"iteration {step}: {got} vs {want}"
    model.get().float_precision()
    torch.testing.assert_close(model.embedding.weight.detach(), plain.embedding.weight.detach(),
                               atol=0.02, rtol=0)
    del shared_target, loss, opt
    settle(bob, alice, james)


def test_sharing_a_model_is_all_or_nothing_and_can_be_run_again(bob, alice, james,
                                                                 monkeypatch):
    """A notebook user interrupts `model.fix_precision().share(...)` midway: the model is
    left as the interrupted `share()` found it (fixed precision, nothing shared), and running
    the same line again completes it."""
    import zsyft.nn as zsyft_nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    values = [p.detach().clone() for p in model.parameters()]
    share, calls = zsyft_nn.share, []

    def interrupted_at_the_third(t, *args, **kwargs):
        calls.append(t)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return share(t, *args, **kwargs)

    monkeypatch.setattr(zsyft_nn, "share", interrupted_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        model.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
    assert {type(p).__name__ for p in model.parameters()} == {"FixedPrecisionTensor"}
    monkeypatch.setattr(zsyft_nn, "share", share)
    model.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
    assert {type(p).__name__ for p in model.parameters()} == {"SharedTensor"}
    model.get().float_precision()
    for before, after in zip(values, model.parameters(), strict=True):
        torch.testing.assert_close(after.detach(), before, atol=1e-3, rtol=0)
    settle(bob, alice)
    assert len(bob._objects) == len(alice._objects) == 0
