"""The client's policy for material dealt ahead of need (`protocol_client.DealtAhead`).

A recording stand-in for the provider's handle shows which DEALs the client posts: every op
id it hands out was named in a DEAL posted before, never twice; repeated small ops are dealt
in growing batches; large ops and a full budget fall back to one op per DEAL.
"""

from __future__ import annotations

import os

from zsyft.tensors import protocol_client
from zsyft.tensors.protocol_client import AHEAD_ELEMENTS, AHEAD_OPS, DealtAhead
from zsyft.wire.messages import Kind

SESSION = os.urandom(16)
PARAMS = {"x_shape": [2, 2], "y_shape": [2, 2], "divisor": 1000}


class RecordingProvider:
    """Records the DEAL bodies posted to it (and whether each was sent at once)."""

    def __init__(self) -> None:
        self.deals: list[list] = []
        self.unsent = 0

    def post(self, kind: int, body: list) -> None:
        assert kind == Kind.DEAL
        self.deals.append(body)
        self.unsent += 1

    def flush(self, deletes: bool = True) -> None:
        self.unsent = 0

    def dealt_ids(self) -> list[bytes]:
        return [op_id for body in self.deals for op_id in body[1]]


def take(policy: DealtAhead, provider: RecordingProvider, count: int, numel: int = 4,
         params: dict = PARAMS, name: str = "fixed_mul") -> list[bytes]:
    ids = []
    for _ in range(count):
        op_id = policy.op_id(provider, SESSION, name, params, numel)
        assert op_id in provider.dealt_ids(), "an op id is handed out only once it was dealt"
        assert provider.unsent == 0, "a DEAL leaves at once"
        ids.append(op_id)
    return ids


def test_the_first_op_of_a_kind_is_dealt_alone():
    provider = RecordingProvider()
    take(DealtAhead(), provider, 1)
    assert provider.deals == [[SESSION, provider.deals[0][1], "fixed_mul", PARAMS]]
    assert len(provider.deals[0][1]) == 1


def test_a_loop_of_small_ops_is_dealt_in_growing_batches_ahead_of_need():
    provider = RecordingProvider()
    policy = DealtAhead()
    ids = take(policy, provider, 300)
    assert len(set(ids)) == 300, "no op id is used twice"
    sizes = [len(body[1]) for body in provider.deals]
    assert sizes[:6] == [1, 2, 4, 8, 16, 32] and max(sizes) == AHEAD_OPS
    assert len(provider.deals) <= 15, sizes
    # Ahead of need: the next batch is asked for while almost half of one is still left.
    (ready,) = policy.ready.values()
    before = len(provider.deals)
    while len(provider.deals) == before:
        left = len(ready)
        take(policy, provider, 1)
    assert left == AHEAD_OPS // 2 - 1


def test_ops_of_other_kinds_or_shapes_are_dealt_apart():
    provider = RecordingProvider()
    policy = DealtAhead()
    take(policy, provider, 3)
    take(policy, provider, 1, params={**PARAMS, "x_shape": [3, 2]})
    take(policy, provider, 1, name="fixed_matmul")
    assert [body[2] for body in provider.deals][-2:] == ["fixed_mul", "fixed_matmul"]
    assert provider.deals[-2][3]["x_shape"] == [3, 2]


def test_large_ops_are_dealt_one_at_a_time_and_medium_ones_in_batches_that_fit():
    provider = RecordingProvider()
    take(DealtAhead(), provider, 10, numel=AHEAD_ELEMENTS)
    assert [len(body[1]) for body in provider.deals] == [1] * 10
    provider = RecordingProvider()
    take(DealtAhead(), provider, 40, numel=AHEAD_ELEMENTS // 4)
    assert max(len(body[1]) for body in provider.deals) == 4


def test_material_not_used_yet_stays_within_the_providers_budget(monkeypatch):
    monkeypatch.setattr(protocol_client, "AHEAD_TOTAL", 100)
    provider = RecordingProvider()
    policy = DealtAhead()
    for shape in range(1, 40):  # many kinds of op, each used a few times
        take(policy, provider, 4, numel=5, params={**PARAMS, "x_shape": [shape]})
        assert policy.unused <= 100 + 5
    assert policy.unused == 5 * sum(len(ready) for ready in policy.ready.values())
