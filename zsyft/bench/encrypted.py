"""Rows on secret-shared tensors: one mul, a matmul, a ReLU, and two training loops.

The data is fixed-point encoded and shared between two parties (bench-bob, bench-alice), with
bench-james as the crypto provider, exactly as `x.fix_precision().share(bob, alice,
crypto_provider=james)` in the tutorials. Bare pyzmq cannot run these protocols, so the rows
have no baseline: each is held to a time of its own (`Target(..., unit="ms")`).

Protocol ops are pipelined like any other command: a row waits for the last one with `.get()`
(the mul, so that its latency includes reconstructing the result) or by syncing both parties
(`bob.sync(); alice.sync()`; a worker answers a SYNC only once everything it forwarded, here to
the provider, has run). `sy.sync()` would also visit the idle workers of the other rows.

Each row's note gives the rounds and bytes per party per element of the protocols it runs, from
`zsyft.mpc.costs`, next to the minimum: a Beaver multiplication sends two masked values of 8 B
per element (eps, delta), 16 B; a truncation 8 B. These rows come last, after the rows whose
bare baselines assume that no other worker is registered (see `env`).
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

from zsyft.bench.base import Case, Plan
from zsyft.bench.env import BenchEnv
from zsyft.bench.report import Target

PARTIES = ("bench-bob", "bench-alice")
PROVIDER = "bench-james"
BEAVER_MIN = 16.0  # B per element one party sends for a Beaver mul: eps and delta, 8 B each
TRUNCATION_MIN = 8.0  # B per element one party sends for a truncation


def cost(protocol: str, minimum: float | None = None, numel: int = 64) -> str:
    """`protocol`'s rounds and bytes per party per element on tensors of `numel` elements
    (a comparison's borrow tree depends on it), with the ratio to `minimum`."""
    from zsyft.mpc.costs import protocol_cost

    found = protocol_cost(protocol, numel)
    sent = found.bytes_per_party(len(PARTIES))
    rounds = f"{found.rounds} round{'s' if found.rounds != 1 else ''}"
    text = f"{protocol} {rounds}, {sent:g} B/element per party"
    if minimum:
        text += f" (minimum {minimum:g} B: {sent / minimum:.2f}x)"
    return text


def training_costs(relu_numel: int) -> str:
    """The protocols of a training step whose ReLU takes `relu_numel` elements."""
    return (
        f"protocols: {cost('fixed_mul', BEAVER_MIN + TRUNCATION_MIN)} for * and @ (per "
        f"output element; @ sends {cost('matmul', BEAVER_MIN / 2)} of its operands instead of "
        f"the mul's 16 B, then truncates), {cost('relu_with_mask', numel=relu_numel)} (ReLU "
        f"keeping its mask [x > 0], on {relu_numel:,} elements), its backward {cost('mul')} "
        "(the gradient times the kept mask)"
    )


class EncryptedCase(Case):
    """A timed op on tensors shared between the two parties; zsyft samples only, in ms."""

    unit = "ms"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.rounds = plan.pick(1, 3)
        self.batch = plan.pick(2, 5)

    def needs(self) -> list[tuple[str, str]]:
        return []

    def needs_later(self) -> list[tuple[str, str]]:
        return [(name, "ipc") for name in (*PARTIES, PROVIDER)]

    def prepare(self, env: BenchEnv) -> None:
        env.start_workers([], self.needs_later())  # nothing to do if started
        self.bob, self.alice, self.james = (env.worker(name) for name, _ in self.needs_later())
        self.node = env.sy.local_worker
        self.setup()
        self.warm_up()
        self.node.raise_pending()

    def encrypt(self, value: Any, **kwargs: Any) -> Any:
        """`value` (a tensor or a model) fixed-point encoded and shared between the parties."""
        return value.fix_precision().share(
            self.bob, self.alice, crypto_provider=self.james, **kwargs
        )

    def wait(self) -> None:
        """Return once both parties ran every op sent so far (and what they forwarded)."""
        self.bob.sync()
        self.alice.sync()

    def setup(self) -> None:
        """Create the shared operands (not timed)."""

    def warm_up(self) -> None:
        """Run the op once untimed: the first protocol ops pay one-time imports on every worker."""
        self.once()

    def once(self) -> float:
        """One timed operation, in the row's unit."""
        raise NotImplementedError

    def zsyft_sample(self) -> list[float]:
        times = [self.once() for _ in range(self.batch)]
        self.node.raise_pending()  # a failed op must not pass for a fast one
        return times

    def bare_sample(self) -> list[float]:
        return []  # no baseline

    def finish(self) -> None:
        self.__dict__.update(x=None, y=None, model=None, data=None, labels=None, opt=None)


class EncryptedMul(EncryptedCase):
    """Latency of one fixed-point mul of two shared scalars, result reconstructed: `z.get()`."""

    key = "encrypted-mul"
    label = "encrypted mul, 1 element"
    target = Target(1.0, upper=True, unit="ms")

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.rounds = plan.pick(2, 5)
        self.batch = plan.pick(10, 40)

    def setup(self) -> None:
        self.x = self.encrypt(torch.tensor([1.5]))
        self.y = self.encrypt(torch.tensor([2.0]))

    def once(self) -> float:
        start = time.perf_counter()
        z = self.x * self.y
        z.get()
        return (time.perf_counter() - start) * 1e3

    def what(self) -> str:
        return (
            "z = x * y; z.get() (Beaver mul, then provider-assisted truncation; .get() waits "
            f"for both and reconstructs); {cost('fixed_mul', BEAVER_MIN + TRUNCATION_MIN)}; "
            "no baseline"
        )


class EncryptedMatmul(EncryptedCase):
    """Time of `z = x @ w` on shared 128 x 128 matrices, both parties synced."""

    key = "encrypted-matmul"
    label = "encrypted matmul 128x128x128"
    target = Target(10.0, upper=True, unit="ms")
    N = 128

    def setup(self) -> None:
        self.x = self.encrypt(torch.rand(self.N, self.N))
        self.y = self.encrypt(torch.rand(self.N, self.N))

    def once(self) -> float:
        start = time.perf_counter()
        z = self.x @ self.y
        self.wait()
        elapsed = time.perf_counter() - start
        del z
        return elapsed * 1e3

    def what(self) -> str:
        from zsyft.mpc.costs import protocol_cost

        n = self.N
        matmul, trunc = protocol_cost("matmul"), protocol_cost("truncation")
        sent = matmul.bytes_per_party(2) * 2 * n * n + trunc.bytes_per_party(2) * n * n
        least = BEAVER_MIN / 2 * 2 * n * n + TRUNCATION_MIN * n * n
        return (
            f"z = x @ w; bob.sync(); alice.sync(); one op: {cost('matmul', BEAVER_MIN / 2)} "
            f"of x and w, then {cost('truncation', TRUNCATION_MIN)} of z: "
            f"{sent / 1024:,.0f} KiB per party, {sent / (n * n):g} B per output element "
            f"(minimum {least / 1024:,.0f} KiB: {sent / least:.2f}x); no baseline"
        )


class EncryptedRelu(EncryptedCase):
    """Time of `F.relu(x)` on 1e5 shared elements (the comparison protocol), parties synced."""

    key = "encrypted-relu"
    label = "encrypted ReLU, 1e5 elements"
    target = Target(130.0, upper=True, unit="ms")
    NUMEL = 100_000

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.batch = plan.pick(1, 3)

    def setup(self) -> None:
        self.x = self.encrypt(torch.randn(self.NUMEL))

    def warm_up(self) -> None:
        """On a small tensor: the one-time costs are the same, the big one is slow."""
        F.relu(self.encrypt(torch.randn(1_000)))
        self.wait()

    def once(self) -> float:
        start = time.perf_counter()
        z = F.relu(self.x)
        self.wait()
        elapsed = time.perf_counter() - start
        del z
        return elapsed * 1e3

    def what(self) -> str:
        from zsyft.mpc.costs import protocol_cost

        sent = protocol_cost("relu", self.NUMEL).bytes_per_party(len(PARTIES))
        return (
            f"z = F.relu(x); bob.sync(); alice.sync(); {cost('relu', numel=self.NUMEL)} (no "
            "minimum stated for "
            f"comparisons: {sent / BEAVER_MIN:.2f}x one Beaver mul's {BEAVER_MIN:g} B); "
            "no baseline"
        )


class Part12(nn.Module):
    """The toy network of tutorial Part 12 (examples/12), with its fixed initial weights."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 2)
        self.fc2 = nn.Linear(2, 1)
        with torch.no_grad():
            self.fc1.weight.set_(torch.tensor([[0.0738, -0.2109], [-0.1579, 0.3174]]))
            self.fc1.bias.set_(torch.tensor([0.0, 0.1]))
            self.fc2.weight.set_(torch.tensor([[-0.5368, 0.7050]]))
            self.fc2.bias.set_(torch.tensor([-0.0343]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class Mlp(nn.Module):
    """784-128-10 with a ReLU between the layers."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class EncryptedTraining(EncryptedCase):
    """Training steps on shared data, targets and model: forward, squared-error sum, backward,
    SGD step (all under encryption), `steps` of them per timed sample, parties synced at the end.
    """

    steps = 1
    lr = 0.1

    def model_and_data(self) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def setup(self) -> None:
        model, data, labels = self.model_and_data()
        self.model = self.encrypt(model, requires_grad=True)
        self.data = self.encrypt(data, requires_grad=True)
        self.labels = self.encrypt(labels, requires_grad=True)
        self.opt = optim.SGD(params=self.model.parameters(), lr=self.lr).fix_precision()

    def step(self) -> Any:
        """One training step; the shared loss."""
        self.opt.zero_grad()
        loss = ((self.model(self.data) - self.labels) ** 2).sum()
        loss.backward()
        self.opt.step()
        return loss

    def once(self) -> float:
        start = time.perf_counter()
        for _ in range(self.steps):
            self.step()
        self.wait()
        return (time.perf_counter() - start) * 1e3


class Part12Loop(EncryptedTraining):
    """The 20 iterations of tutorial Part 12, each reconstructing its loss, in seconds."""

    key = "encrypted-part12"
    label = "encrypted training, Part 12 loop (20 it.)"
    unit = "s"
    target = Target(0.3, upper=True, unit="s")
    steps = 20

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.batch = plan.pick(1, 3)

    def model_and_data(self) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
        data = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1.0]])
        return Part12(), data, torch.tensor([[0], [0], [1], [1.0]])

    def warm_up(self) -> None:
        self.step().get().float_precision()
        self.wait()

    def once(self) -> float:
        self.setup()  # untimed: every sample starts from the tutorial's weights
        self.wait()
        start = time.perf_counter()
        for _ in range(self.steps):
            self.step().get().float_precision()  # as the tutorial prints each loss
        return time.perf_counter() - start

    def what(self) -> str:
        return (
            "examples/12: Net 2-2-1, 4 samples, SGD lr 0.1, 20 x (zero_grad, forward, "
            "((pred - target)**2).sum(), backward, step, loss.get().float_precision()); "
            f"{training_costs(4 * 2)}; no baseline"
        )


class MlpStep(EncryptedTraining):
    """One training step of a 784-128-10 MLP on a batch of 64."""

    key = "encrypted-mlp-step"
    label = "encrypted training step, MLP 784-128-10, batch 64"
    target = Target(350.0, upper=True, unit="ms")
    lr = 0.001

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.batch = plan.pick(1, 5)
        self.rounds = 1

    def model_and_data(self) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        data = torch.rand(64, 784, generator=generator)
        labels = torch.randint(0, 10, (64,), generator=generator)
        return Mlp(), data, F.one_hot(labels, 10).float()

    def what(self) -> str:
        return (
            f"zero_grad, forward, ((pred - target)**2).sum(), backward, SGD step (lr "
            f"{self.lr:g}); bob.sync(); alice.sync(); {training_costs(64 * 128)}; no baseline"
        )
