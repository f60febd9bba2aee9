"""Two programs using the same launched workers at the same time.

Each worker serves other clients while it waits on a peer (a forwarded request, a protocol
round). Neither a reply read by a nested request nor protocol ops reaching the parties in
opposite orders may leave a program waiting.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.helpers import wait_until
from tests.integration.test_cli import Launch

ROUNDS = 40

CLIENT = textwrap.dedent(
    """
    import copy, sys, torch, torch.nn.functional as F, zsyft as sy
    hook = sy.TorchHook(torch)
    bob, alice, james = sy.connect("bob", "alice", "james", cluster_file=sys.argv[1])
    if sys.argv[2] == "train":  # the Part 12 loop, next to plaintext from the same weights
        data = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1.0]])
        target = torch.tensor([[0], [0], [1], [1.0]])
        plain = torch.nn.Linear(2, 1)
        model = copy.deepcopy(plain).fix_precision().share(
            bob, alice, crypto_provider=james, requires_grad=True)
        opt = torch.optim.SGD(model.parameters(), lr=0.1).fix_precision()
        plain_opt = torch.optim.SGD(plain.parameters(), lr=0.1)
        d, t = (v.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
                for v in (data, target))
    for i in range(int(sys.argv[3])):
        v = torch.full((4,), float(i))
        if sys.argv[2] == "train":
            opt.zero_grad()
            loss = ((model(d) - t) ** 2).sum()
            loss.backward()
            opt.step()
            plain_opt.zero_grad()
            expected = ((plain(data) - target) ** 2).sum()
            expected.backward()
            plain_opt.step()
            got, expected = loss.get().float_precision(), expected.detach()
        elif sys.argv[2] == "chain":  # a pointer chain me -> bob -> alice
            got = (v.send(bob).send(alice) + 1).get().get()
            expected = v + 1
        elif sys.argv[2] == "move":
            got = v.send(bob).move(james).get()
            expected = v
        else:
            shared = v.fix_precision().share(bob, alice, crypto_provider=james)
            got = F.relu(shared * shared - 10).get().float_precision()
            expected = F.relu(v * v - 10)
        assert torch.allclose(got, expected, atol=0.02), (i, got, expected)
    print("ok", flush=True)
    """
)


@pytest.fixture
def cluster(tmp_path):
    launch = Launch(tmp_path, "bob", "alice", "james")
    launch.wait_ready()
    yield launch.cluster_file
    launch.stop()


def _run_at_once(cluster, programs: list[tuple[str, int]], timeout: float) -> None:
    """Run one CLIENT per (work, rounds) at the same time; each must finish and say ok."""
    clients = [
        subprocess.Popen([sys.executable, "-c", CLIENT, str(cluster), work, str(rounds)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for work, rounds in programs
    ]
    try:
        results = [client.communicate(timeout=timeout) for client in clients]
    finally:
        for client in clients:
            client.kill()
            client.wait(10)
    for (out, err), client in zip(results, clients, strict=True):
        assert client.returncode == 0 and out.strip() == "ok", err[-2000:]


@pytest.fixture
def cluster_never_woken_idle(tmp_path, monkeypatch):
    """Workers whose waiting parties sleep for an hour when no message comes: a program then
    finishes only if no message a party handed on waits for such a wake-up."""
    monkeypatch.setenv("ZSYFT_IDLE_WAKE_MS", str(3_600_000))
    launch = Launch(tmp_path, "bob", "alice", "james")
    launch.wait_ready()
    yield launch.cluster_file
    launch.stop()


def test_protocol_ops_of_two_programs_never_wait_for_an_idle_wake_up(cluster_never_woken_idle):
    """A party waiting in one program's op ran the other program's message, which deferred
    that program's next one; it waited for its idle wake-up (100 ms) to hand it on, so two
    programs computing on shared values at once ran each op ~100 ms late."""
    _run_at_once(cluster_never_woken_idle, [("encrypted", 10), ("encrypted", 10)], timeout=60)


@pytest.mark.parametrize("work", ["move", "encrypted", "train"])
def test_two_programs_working_at_once_both_finish(cluster, work):
    """`train`: a program's ops, run while a party waits on a protocol round of the other's,
    ran in the round's inference mode, and the next SGD step could not change what they
    stored ("Inplace update to inference tensor outside InferenceMode")."""
    _run_at_once(cluster, [(work, ROUNDS), (work, ROUNDS)], timeout=90)


def test_a_program_using_a_chain_beside_one_computing_on_shared_values_both_finish(cluster):
    """alice serves the chain program's requests nested while she waits on bob; the other
    program's FETCH, served that way, overtook its own protocol op held back meanwhile
    (object not in store, then a hang)."""
    _run_at_once(cluster, [("chain", 1500), ("encrypted", 300)], timeout=120)  # as long each


CHAIN_USER = textwrap.dedent(
    """
    import os, sys, torch, zsyft as sy
    hook = sy.TorchHook(torch)
    bob, alice = sy.connect("bob", "alice", cluster_file=sys.argv[1])
    chain = torch.ones(2).send(bob).send(alice)
    total = chain + chain  # alice makes it at bob, on this program's behalf
    direct = torch.zeros(3).send(bob)
    sy.sync()
    print(bob.ping()["objects"], alice.ping()["objects"], flush=True)
    if sys.argv[2] == "crash":
        os._exit(0)  # gone without deleting anything
    """
)


def _objects(cluster_file) -> list[str]:
    """The OBJECTS column of `zsyft status`."""
    status = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "status", "--cluster-file", str(cluster_file)],
        capture_output=True, text=True, timeout=30)
    return [line.split()[4] for line in status.stdout.strip().splitlines()[1:]]


def test_a_program_that_used_a_chain_has_its_objects_freed_after_the_lease(tmp_path):
    """alice stays connected to bob after the program is gone: her link, relaying for the
    program, must not keep the program's lease at bob from running out."""
    launch = Launch(tmp_path, "bob", "alice", "--lease", "1")
    try:
        cluster = launch.wait_ready()
        user = subprocess.run(
            [sys.executable, "-c", CHAIN_USER, str(launch.cluster_file), "crash"],
            capture_output=True, text=True, timeout=60)
        assert user.returncode == 0 and user.stdout.split() == ["3", "2"], user.stderr[-2000:]
        assert wait_until(lambda: _objects(launch.cluster_file) == ["0", "0"], 20), (
            _objects(launch.cluster_file), cluster)
    finally:
        launch.stop()


def test_a_program_that_ends_frees_its_objects_at_launched_workers_at_once(tmp_path):
    """Nothing could reach them once it is gone (its session key goes with it); the lease
    (an hour here) would have held them."""
    launch = Launch(tmp_path, "bob", "alice", "--lease", "3600")
    try:
        launch.wait_ready()
        user = subprocess.run(
            [sys.executable, "-c", CHAIN_USER, str(launch.cluster_file), "exit"],
            capture_output=True, text=True, timeout=60)
        assert user.returncode == 0 and user.stdout.split() == ["3", "2"], user.stderr[-2000:]
        assert _objects(launch.cluster_file) == ["0", "0"]
    finally:
        launch.stop()
