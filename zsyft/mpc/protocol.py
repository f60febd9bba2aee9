"""The per-party interface shared by all interactive protocols, and a local driver.

Each protocol in ``zsyft.mpc`` is written from the point of view of one party: a
:class:`PartyProtocol` object holds that party's shares and dealt material, produces the
message it broadcasts in the current round, and computes its next state from the messages
of all parties.  Every round is a broadcast: party ``i`` sends the same tensor to each of
the other parties, then receives theirs.  A runtime therefore needs a single generic loop
to run any protocol across processes::

    msg = party.first_message()
    while msg is not None:
        msgs = exchange(msg)            # messages of all parties, ordered by party index
        msg = party.receive(msgs)
    result = party.output()

:func:`run_local` is that loop with all parties in one process (used by the unit tests and
by the ``run_local_*`` helpers of each protocol); it can also record a :class:`Transcript`
of every message for inspection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["PartyProtocol", "Sequential", "Transcript", "open_sum", "open_xor", "run_local"]


def open_sum(messages: Sequence[torch.Tensor]) -> torch.Tensor:
    """Reconstruct an additively shared value from all parties' messages (mod 2^64)."""
    out = messages[0] + messages[1]  # a new tensor: no message is changed
    for m in messages[2:]:
        out += m
    return out


def open_xor(messages: Sequence[torch.Tensor]) -> torch.Tensor:
    """Reconstruct an XOR-shared value from all parties' messages."""
    out = messages[0] ^ messages[1]
    for m in messages[2:]:
        out ^= m
    return out


class PartyProtocol(ABC):
    """One party's side of an interactive protocol (see the module docstring)."""

    party_index: int
    n_parties: int

    def __init__(self, party_index: int, n_parties: int) -> None:
        if n_parties < 2:
            raise ValueError(f"protocols need n_parties >= 2, got {n_parties}")
        if not 0 <= party_index < n_parties:
            raise ValueError(f"party_index {party_index} out of range for {n_parties} parties")
        self.party_index = party_index
        self.n_parties = n_parties
        self._output: torch.Tensor | None = None

    @property
    def is_first(self) -> bool:
        """Party 0 adds public constants to its shares."""
        return self.party_index == 0

    def _check_messages(self, messages: Sequence[torch.Tensor]) -> None:
        if len(messages) != self.n_parties:
            raise ValueError(f"expected {self.n_parties} messages, got {len(messages)}")

    @abstractmethod
    def first_message(self) -> torch.Tensor:
        """The tensor this party broadcasts in round 1."""

    @abstractmethod
    def receive(self, messages: Sequence[torch.Tensor]) -> torch.Tensor | None:
        """Consume the round's messages of all parties (by party index, own included).

        Returns the next message to broadcast, or ``None`` once the output is ready.
        """

    def prepare(self) -> None:
        """Do now what the next :meth:`receive` needs and no other party's message does
        (deriving material, splitting masks). A runtime calls it once its message is on
        the way: the work then overlaps the other parties' and the network's, instead of
        following the round's last message. Optional: `receive` does what was not done."""
        return None

    def output(self) -> torch.Tensor:
        """This party's share of the result (available after the last round)."""
        if self._output is None:
            raise RuntimeError("protocol has not finished")
        return self._output

    def outputs(self) -> list[torch.Tensor]:
        """All output shares, for protocols with more than one result (the result first)."""
        return [self.output()]


class Sequential(PartyProtocol):
    """Two protocols back to back, as one: ``then(output of first)`` builds the second.

    The second protocol's first message goes out in the round after the first protocol's
    last one, so the rounds add up with none wasted (a Beaver product followed by its
    truncation takes two rounds, and one control message from the client instead of two).
    """

    def __init__(
        self,
        first: PartyProtocol,
        then: Callable[[torch.Tensor], PartyProtocol],
        prepare_then: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(first.party_index, first.n_parties)
        self.current = first
        self._then: Callable[[torch.Tensor], PartyProtocol] | None = then
        self._prepare_then = prepare_then  # what `then` needs that its input does not

    def first_message(self) -> torch.Tensor:
        return self.current.first_message()

    def prepare(self) -> None:
        self.current.prepare()
        if self._then is not None and self._prepare_then is not None:
            self._prepare_then()

    def receive(self, messages: Sequence[torch.Tensor]) -> torch.Tensor | None:
        message = self.current.receive(messages)
        if message is not None or self._then is None:
            return message
        then, self._then = self._then, None
        self.current = then(self.current.output())
        return self.current.first_message()

    def output(self) -> torch.Tensor:
        return self.current.output()


@dataclass
class Transcript:
    """Messages of a local run: ``rounds[r][i]`` is what party ``i`` broadcast in round r."""

    rounds: list[list[torch.Tensor]] = field(default_factory=list)

    def bytes_sent(self, party_index: int) -> int:
        """Bytes party ``party_index`` sent to *each* other party over all rounds."""
        return sum(r[party_index].numel() * r[party_index].element_size() for r in self.rounds)


def run_local(
    parties: Sequence[PartyProtocol], transcript: Transcript | None = None
) -> list[torch.Tensor]:
    """Run all parties of one protocol instance in this process; return their outputs."""
    messages = [p.first_message() for p in parties]
    while True:
        if transcript is not None:
            transcript.rounds.append(list(messages))
        for p in parties:  # as a runtime does while the messages travel
            p.prepare()
        nxt = [p.receive(messages) for p in parties]
        done = [m is None for m in nxt]
        if all(done):
            return [p.output() for p in parties]
        if any(done):
            raise RuntimeError("parties disagree on the number of rounds")
        messages = nxt  # type: ignore[assignment]
