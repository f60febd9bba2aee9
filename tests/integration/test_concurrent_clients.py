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
