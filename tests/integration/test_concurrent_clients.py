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
    import sys, torch, torch.nn.functional as F, zsyft as sy
    hook = sy.TorchHook(torch)
    bob, alice, james = sy.connect("bob", "alice", "james", cluster_file=sys.argv[1])
    for i in range(int(sys.argv[3])):
        v = torch.full((4,), float(i))
        if sys.argv[2] == "move":
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


@pytest.mark.parametrize("work", ["move", "encrypted"])
def test_two_programs_working_at_once_both_finish(cluster, work):
    clients = [
        subprocess.Popen([sys.executable, "-c", CLIENT, str(cluster), work, str(ROUNDS)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        results = [client.communicate(timeout=90) for client in clients]
    finally:
        for client in clients:
            client.kill()
            client.wait(10)
    for (out, err), client in zip(results, clients, strict=True):
        assert client.returncode == 0 and out.strip() == "ok", err[-2000:]


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
    os._exit(0)  # gone without deleting anything
    """
)


def test_a_program_that_used_a_chain_has_its_objects_freed_after_the_lease(tmp_path):
    """alice stays connected to bob after the program is gone: her link, relaying for the
    program, must not keep the program's lease at bob from running out."""
    launch = Launch(tmp_path, "bob", "alice", "--lease", "1")
    try:
        cluster = launch.wait_ready()
        user = subprocess.run([sys.executable, "-c", CHAIN_USER, str(launch.cluster_file)],
                              capture_output=True, text=True, timeout=60)
        assert user.returncode == 0 and user.stdout.split() == ["3", "2"], user.stderr[-2000:]

        def objects() -> list[str]:
            status = subprocess.run(
                [sys.executable, "-m", "launcher.cli", "status", "--cluster-file",
                 str(launch.cluster_file)], capture_output=True, text=True, timeout=30)
            return [line.split()[4] for line in status.stdout.strip().splitlines()[1:]]

        assert wait_until(lambda: objects() == ["0", "0"], 20), (objects(), cluster)
    finally:
        launch.stop()
