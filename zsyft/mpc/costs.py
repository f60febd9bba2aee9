"""Communication cost of each protocol: rounds and bytes per element.

These are the figures a benchmark prints next to its measurements.  "Bytes per element"
counts what one party sends to *each* other party (every round is a broadcast), so with n
parties a party sends ``(n - 1)`` times that; the provider's correction goes to the last
party only.  The numbers are derived from the exact message-size functions of the
protocol modules (which the unit tests check against real transcripts).
"""

from __future__ import annotations

from dataclasses import dataclass

from .comparison import comparison_message_bytes
from .comparison_material import COMPARISONS, RADIX_FOUR_MAX, comparison_spec, tree_for
from .truncation import truncation_message_bytes

__all__ = [
    "ProtocolCost",
    "comparison_correction_bytes",
    "protocol_cost",
    "protocol_costs",
]

# Multiple of 8, so bit-packed messages have no partial byte and the average is exact.
_SAMPLE = 64


@dataclass(frozen=True)
class ProtocolCost:
    """Rounds and bytes of one protocol, per element of its input."""

    protocol: str
    rounds: int
    bytes_per_element: float
    """Sent by one party to each other party."""
    provider_bytes_per_element: float
    """Correction sent by the provider to the last party."""
    element: str
    """What one element is."""

    def bytes_per_party(self, n_parties: int) -> float:
        """Bytes per element one party sends in total, to its ``n_parties - 1`` peers."""
        return self.bytes_per_element * (n_parties - 1)


def comparison_correction_bytes(name: str, numel: int) -> int:
    """Size of the provider's correction for comparison ``name`` on ``numel`` elements."""
    spec = comparison_spec(name)
    total = 8 * numel * (1 + (spec.multiply != "none"))  # [t], and [r t] or [m t]
    return total + tree_for(numel).correction_bytes(numel, spec.zero_test)


def protocol_costs(numel: int = _SAMPLE) -> dict[str, ProtocolCost]:
    """Costs of all protocols, keyed by name, for tensors of about ``numel`` elements (the
    comparisons' borrow tree depends on it)."""
    sample = _SAMPLE if numel <= RADIX_FOUR_MAX else RADIX_FOUR_MAX + _SAMPLE
    costs = {
        "mul": ProtocolCost("mul", 1, 16.0, 8.0, "output element (operands of equal shape)"),
        "matmul": ProtocolCost(
            "matmul", 1, 8.0, 8.0, "element of x or y (provider: per output element)"
        ),
        "truncation": ProtocolCost(
            "truncation", 1, truncation_message_bytes(_SAMPLE) / _SAMPLE, 16.0, "element"
        ),
        "fixed_mul": ProtocolCost(
            "fixed_mul", 2, 16.0 + truncation_message_bytes(1), 16.0, "output element (mul + trunc)"
        ),
    }
    for name in COMPARISONS:
        sent = comparison_message_bytes(name, sample)
        costs[name] = ProtocolCost(
            name,
            len(sent),
            sum(sent) / sample,
            comparison_correction_bytes(name, sample) / sample,
            "element",
        )
    return costs


def protocol_cost(protocol: str, numel: int = _SAMPLE) -> ProtocolCost:
    """Cost of one protocol (``mul``, ``matmul``, ``truncation``, ``fixed_mul``, ``relu`` ...)
    on tensors of about ``numel`` elements."""
    costs = protocol_costs(numel)
    try:
        return costs[protocol]
    except KeyError:
        raise ValueError(
            f"unknown protocol {protocol!r}; expected one of {sorted(costs)}"
        ) from None
