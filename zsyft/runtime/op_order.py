"""Which protocol ops a party may start while it waits inside another one.

A party waiting for a peer's round message keeps serving its socket, so another client's
MPC_RUN can arrive and run nested, to completion, before the outer op resumes. Two clients
whose ops reach the parties in opposite orders would then deadlock: bob runs B inside A and
waits for alice's B message, while alice runs A inside B and waits for bob's A message; each
inner op needs the other party's outer op to resume first.

The rule that prevents it orders ops by a key every party sees alike: the client's sequence
number of the op (increasing: a client's later op has a larger key), then its op id. While
waiting in op `T`, a party starts a nested op only if its key is smaller than `T`'s; any other
MPC_RUN is held back, with every later message of the same client, until the party waits in
an op with a larger key, or no longer waits at all. Nested ops then always have decreasing
keys, so the unfinished op with the smallest key is never held back (a smaller key waits
nowhere), never deferred behind its own client's earlier ops (theirs are smaller and done)
and never buried under another op anywhere: it completes, and by induction every op does.

For that, a client's messages that the worker deferred while one of its messages was being
served join the held ones as soon as that message is done (`HeldRuns.take_deferred`),
rather than waiting until the whole stack of nested handling unwinds. A message that comes
while its client has held ones is held too, also outside a protocol wait (the worker may
serve it nested while it waits on a pointer chain's next worker): a client's FETCH must not
overtake its held MPC_RUN.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from zsyft.wire.batching import peek_kind, unbatch
from zsyft.wire.codec import decode
from zsyft.wire.messages import Kind, is_object_id

if TYPE_CHECKING:
    from zsyft.runtime.worker import Worker

MAX_HELD = 10_000  # beyond this, messages are handled as they come (no unbounded memory)
_ALWAYS_NOW = (Kind.MPC_MSG, Kind.MATERIAL)  # what the ops in progress wait for


OpKey = tuple[int, bytes]
NO_OP: OpKey = (-1, b"")  # the key of a message held only to keep its client's order


def op_key(seq: Any, op_id: bytes) -> OpKey:
    """The order of an op: its client's sequence number (0 if malformed), then its id."""
    return (seq if type(seq) is int else 0, op_id)


def run_keys(frames: list[Any]) -> list[OpKey]:
    """The keys of the MPC_RUNs a message carries (inside a BATCH too); [] if none or if it
    is malformed (its handler reports that)."""
    if peek_kind(frames) not in (Kind.MPC_RUN, Kind.BATCH):
        return []
    try:
        msg = decode(frames)
        if msg.kind == Kind.BATCH:
            return [k for inner in unbatch(frames, msg.body) for k in run_keys(inner)]
        body = msg.body
        if msg.kind == Kind.MPC_RUN and isinstance(body, list) and len(body) > 2 and (
                is_object_id(body[2])):
            return [op_key(body[0], body[2])]
        return []
    except Exception:
        return []


class HeldRuns:
    """The messages a party holds back while it waits inside protocol ops (see above)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._held: deque[tuple[bytes, list[Any], OpKey]] = deque()  # identity, frames, key

    def hold(self, identity: bytes, frames: list[Any], waiting_in: OpKey) -> bool:
        """Whether to hold back this message, which came while waiting in op `waiting_in`."""
        if len(self._held) >= MAX_HELD or peek_kind(frames) in _ALWAYS_NOW:
            return False
        keys = run_keys(frames)
        later = bool(keys) and max(keys) > waiting_in
        behind = self.worker.has_deferred(identity) or any(
            held[0] == identity for held in self._held)  # keep the client's order
        if later or behind:
            self._held.append((identity, frames, max(keys) if keys else NO_OP))
            return True
        return False

    def keep_behind(self, identity: bytes, frames: list[Any]) -> bool:
        """Hold back a message that came while its client has held ones (outside a wait);
        whether it did. Round messages are never held: the ops in progress wait for them."""
        if not self._held or peek_kind(frames) in _ALWAYS_NOW:
            return False
        if any(held[0] == identity for held in self._held):
            self._held.append((identity, frames, NO_OP))
            return True
        return False

    def take_deferred(self) -> int:
        """Hold the worker's deferred messages whose client is no longer being served, each
        before its client's later held ones: they can run before the stack unwinds. Returns
        how many it took."""
        taken = self.worker.take_unblocked()
        for identity, frames in reversed(taken):
            keys = run_keys(frames)
            first = next((i for i, held in enumerate(self._held) if held[0] == identity),
                         len(self._held))
            self._held.insert(first, (identity, frames, max(keys) if keys else NO_OP))
        return len(taken)

    def release_before(self, waiting_in: OpKey) -> int:
        """Handle now (nested) the held messages whose ops may start inside `waiting_in`, each
        after its client's earlier held messages. Returns how many it handled."""
        released = 0
        while (index := self._next_allowed(waiting_in)) is not None:
            identity, frames, _ = self._held[index]
            del self._held[index]
            self.worker.handle(identity, frames, released=True)
            released += 1
        return released

    def _next_allowed(self, waiting_in: OpKey) -> int | None:
        blocked: set[bytes] = set()
        for index, (identity, _, key) in enumerate(self._held):
            if identity not in blocked and key < waiting_in:
                return index
            blocked.add(identity)
        return None

    def release_all(self) -> None:
        """No protocol op is in progress any more: every held message is handled next, after
        the ones the worker deferred already."""
        while self._held:
            identity, frames, _ = self._held.popleft()
            self.worker.defer(identity, frames)
