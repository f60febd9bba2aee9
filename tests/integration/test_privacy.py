"""What each process receives during encrypted computation, recorded by the workers themselves
(`ZSYFT_RECORD_FRAMES`): no plaintext anywhere, no tensor at the provider, and the values the
parties open do not depend on the secret."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import zsyft as sy
from zsyft.runtime.recording import read_frames
from zsyft.wire.codec import decode, tensor_buffer
from zsyft.wire.messages import Kind

NAMES = ("pbob", "palice", "pjames")


def start_recorded(hook, directory, monkeypatch):
    monkeypatch.setenv("ZSYFT_RECORD_FRAMES", str(directory))
    workers = [sy.VirtualWorker(hook, id=name) for name in NAMES]
    for worker in workers:
        worker.ping()
    return workers


def stop(workers):
    for worker in workers:
        sy.local_worker.workers.pop(worker.id, None)
        worker.close()


def le_bytes(value: int) -> bytes:
    return (value % 2**64).to_bytes(8, "little")


def test_no_process_receives_plaintext_and_the_provider_no_tensor(hook, tmp_path, monkeypatch):
    bob, alice, james = workers = start_recorded(hook, tmp_path, monkeypatch)
    try:
        x, y = torch.full((512,), 1234.5), torch.full((512,), -123.45)
        kwargs = {"crypto_provider": james, "requires_grad": True}
        xs = x.fix_precision().share(bob, alice, **kwargs)
        ys = y.fix_precision().share(bob, alice, **kwargs)
        def compute(a, b):
            images, kernels = a.view(2, 4, 8, 8), b.view(8, 4, 4, 4)
            return F.relu(a * b + a).sum() + F.conv2d(images, kernels).sum()

        z = compute(xs, ys)
        z.backward()
        result = z.get().float_precision()
        torch.testing.assert_close(result, compute(x, y), rtol=1e-3, atol=1.0)
        for worker in workers:
            worker.sync()
    finally:
        stop(workers)
    conv_output = 64 * -152399025  # 64 products per output element of the convolution
    canaries = [le_bytes(v) for v in (1234500, -123450, -152399025, 1234500 - 152399025,
                                      conv_output)]
    canaries += [raw_bytes(torch.tensor(v)) for v in (1234.5, -123.45)]
    for name in NAMES:
        data = b"".join(b"".join(frames) for frames in read_frames(tmp_path / f"{name}.frames"))
        if name != "pjames":  # the provider gets a few hundred bytes of metadata in all
            assert len(data) > 10_000, f"{name} recorded its traffic"
        for canary in canaries:
            assert canary not in data, f"{name} received a plaintext value"
    provider = read_frames(tmp_path / "pjames.frames")
    assert provider and all(len(frames) == 1 for frames in provider), "tensor frames at provider"
    kinds = {decode(frames).kind for frames in provider}
    assert kinds <= {Kind.PROVIDER_SETUP, Kind.DEAL, Kind.SYNC, Kind.PING, Kind.LIST}, kinds


def opened_values(directory) -> torch.Tensor:
    """The values the two parties open: the sum of the two messages of each protocol round."""
    received = {}
    for name in NAMES[:2]:
        for frames in read_frames(directory / f"{name}.frames"):
            msg = decode(frames)
            if msg.kind == Kind.MPC_MSG:
                _session, op_id, round_no, sender, tensor = msg.body
                received.setdefault((op_id, round_no), {})[sender] = tensor
    sums = [pair[0] + pair[1] for pair in received.values() if len(pair) == 2]
    return torch.cat([s.flatten() for s in sums])


def raw_bytes(tensor: torch.Tensor) -> bytes:
    return bytes(tensor_buffer(tensor.contiguous()))


def byte_histogram(values: torch.Tensor) -> torch.Tensor:
    raw = torch.frombuffer(bytearray(raw_bytes(values)), dtype=torch.uint8)
    return torch.bincount(raw.long(), minlength=256).double()


def test_opened_values_do_not_depend_on_the_secret(hook, tmp_path, monkeypatch):
    """Chi-square of the byte distribution of everything opened, for two very different secrets.
    Without the dealer's masks, the opened values would be the secret itself (for 0: all zero
    bytes) and the statistic would be enormous; with them it is that of two uniform samples
    (255 degrees of freedom: mean 255, sd 23; the bound is ~9 sd)."""
    histograms = []
    for run, secret in enumerate((0.0, 2.0**30)):
        directory = tmp_path / f"run{run}"
        directory.mkdir()
        workers = start_recorded(hook, directory, monkeypatch)
        bob, alice, james = workers
        try:
            xs = torch.full((4096,), secret).fix_precision().share(bob, alice,
                                                                   crypto_provider=james)
            (xs * xs).get()
            bob.sync()
            alice.sync()
        finally:
            stop(workers)
        histograms.append(byte_histogram(opened_values(directory)))
    a, b = histograms
    assert a.sum() > 50_000 and a.sum() == b.sum()
    assert chi_square(a, b) < 470, f"opened values depend on the secret ({chi_square(a, b):.0f})"
    # The statistic has the power to see a leak: unmasked opened values would be the encoded
    # secret itself.
    unmasked = byte_histogram(torch.full((int(a.sum()) // 8,), int(2.0**30 * 1000)))
    assert chi_square(a, unmasked) > 100 * 470


def chi_square(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((((a - b) ** 2) / (a + b).clamp(min=1)).sum())
