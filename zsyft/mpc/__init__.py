"""Secure multi-party computation primitives of zsyft, on local int64 tensors.

Values are additively secret-shared in the ring Z/2^64 (``torch.int64`` with wraparound)
among ``n >= 2`` semi-honest parties, helped by a non-colluding crypto provider that only
learns operation metadata.  Everything here is a pure function or a per-party protocol
object working on local tensors: no sockets, threads or torch dispatch.  A runtime runs
each party of a :class:`PartyProtocol` in its own process and exchanges the broadcast
messages between rounds; the ``run_local_*`` helpers run all parties in one process.

Modules: :mod:`.prg` (CSPRNG), :mod:`.ring` (Z/2^64 helpers), :mod:`.encoding`
(fixed point), :mod:`.sharing` (additive/XOR sharing), :mod:`.protocol` (party interface),
:mod:`.provider` and :mod:`.comparison_material` (dealt correlated randomness),
:mod:`.beaver` (multiplication), :mod:`.convolution` (convolutions as Beaver kinds),
:mod:`.fixed_product` (a product and its truncation as one op), :mod:`.truncation` (division
by a public divisor), :mod:`.comparison` (comparison, ReLU) with its borrow circuits
:mod:`.borrow_tree` and :mod:`.lookahead`, :mod:`.costs` (rounds and bytes), :mod:`.bitops`
(bit-sliced helpers).
"""

from .beaver import (
    BeaverParty,
    beaver_combine,
    beaver_masked,
    beaver_message_bytes,
    run_local_beaver,
)
from .comparison import (
    ComparisonParty,
    comparison_message_bytes,
    run_local_comparison,
    run_local_gt,
    run_local_lt,
    run_local_ltz,
    run_local_relu,
    run_local_relu_backward,
)
from .comparison_material import (
    COMPARISONS,
    ComparisonMaterial,
    ComparisonSpec,
    comparison_spec,
    deal_comparison,
    party_comparison,
)
from .costs import ProtocolCost, comparison_correction_bytes, protocol_cost, protocol_costs
from .encoding import EncodingOverflowError, FixedPointEncoder
from .prg import OpId, Prg, fresh_seed, random_tensor
from .protocol import PartyProtocol, Transcript, open_sum, open_xor, run_local
from .provider import (
    BeaverTriple,
    bilinear_output_shape,
    deal_triple,
    party_triple,
)
from .ring import unsigned_floordiv, wrap
from .sharing import reconstruct, reconstruct_xor, share, share_xor
from .truncation import (
    TruncationParty,
    run_local_truncation,
    truncation_constants,
    truncation_error_bounds,
    truncation_message_bytes,
)
from .truncation_material import (
    TruncationMaterial,
    deal_truncation,
    party_truncation,
)

__all__ = [
    "COMPARISONS",
    "BeaverParty",
    "BeaverTriple",
    "ComparisonMaterial",
    "ComparisonParty",
    "ComparisonSpec",
    "EncodingOverflowError",
    "FixedPointEncoder",
    "OpId",
    "PartyProtocol",
    "Prg",
    "ProtocolCost",
    "Transcript",
    "TruncationMaterial",
    "TruncationParty",
    "beaver_combine",
    "beaver_masked",
    "beaver_message_bytes",
    "bilinear_output_shape",
    "comparison_correction_bytes",
    "comparison_message_bytes",
    "comparison_spec",
    "deal_comparison",
    "deal_triple",
    "deal_truncation",
    "fresh_seed",
    "open_sum",
    "open_xor",
    "party_comparison",
    "party_triple",
    "party_truncation",
    "protocol_cost",
    "protocol_costs",
    "random_tensor",
    "reconstruct",
    "reconstruct_xor",
    "run_local",
    "run_local_beaver",
    "run_local_comparison",
    "run_local_gt",
    "run_local_lt",
    "run_local_ltz",
    "run_local_relu",
    "run_local_relu_backward",
    "run_local_truncation",
    "share",
    "share_xor",
    "truncation_constants",
    "truncation_error_bounds",
    "truncation_message_bytes",
    "unsigned_floordiv",
    "wrap",
]
