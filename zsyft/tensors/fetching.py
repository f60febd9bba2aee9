"""`get()`: bringing remote tensors home, so that neither an interrupt nor an error loses one.

Every fetch of a batch is sent before the first reply is awaited (the shares of a secret come
back in one round trip). A worker sets a fetched tensor aside until the client's next get()
there (`FetchMode.HAND_OVER`), so a reply lost to Ctrl-C is fetched again; what arrived
before an interrupt, or before an earlier op's error is raised, is kept on its pointer for
the next get().
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from zsyft.errors import ZsyftError
from zsyft.remote.refs import RemoteRef
from zsyft.tensors.pointer import PointerTensor, release_dropped_base
from zsyft.wire.messages import FetchMode, Kind

KEPT = "_zsyft_kept"  # what an interrupted get() received for this pointer, for the next one
KEEP_WAITING_S = 1.0  # after Ctrl-C, how long get() still waits for replies already on their way
HAND_OVER = int(FetchMode.HAND_OVER)
# A worker sets what get() fetched aside until this client's next get() there; a tensor of
# this many bytes or more is deleted at once instead (one more message, to free its memory).
PROMPT_DELETE_BYTES = 1 << 20


def get_many(pointers: Sequence[PointerTensor], sync_point: bool = True) -> list[torch.Tensor]:
    """`[p.get() for p in pointers]`, with every fetch sent before the first reply is awaited:
    pointers at different workers (the shares of a secret) come back in one round trip.

    A get() interrupted while it waits (Ctrl-C, a Jupyter interrupt) keeps what it received
    on the pointers, and the next get() of them returns it (see `_keep_for_next_get`). A
    reply lost to the interrupt (it was being read or decoded) is fetched again: the worker
    sets a fetched tensor aside (no longer listed or counted) until this client's next get()
    there, which says the earlier ones completed (`FetchMode.HAND_OVER`; a tensor of 1 MiB or
    more is deleted at once instead). A pointer held at the worker (a chain) hands its
    ownership over in the reply, so losing that reply still loses the object.

    A sync point: errors of earlier ops are raised, before fetching and after (then with the
    values kept on their pointers for the next get()); `sync_point=False` leaves them to
    the caller.
    """
    fetched = iter(_fetch([p for p in pointers if KEPT not in p.__dict__], sync_point))
    return [p.__dict__.pop(KEPT) if KEPT in p.__dict__ else next(fetched) for p in pointers]


def _fetch(pointers: Sequence[PointerTensor], sync_point: bool) -> list[torch.Tensor]:
    for pointer in pointers:
        pointer.ref.check_live()
    if pointers and sync_point:
        pointers[0].location.node.raise_pending()
    fetched = [_own_copy(pointer) for pointer in pointers]
    requests = [
        (pointer, own, pointer.location.send_request(
            Kind.FETCH, [own.ref.id, HAND_OVER, pointer.location.gets_done]))
        for pointer, own in zip(pointers, fetched, strict=True)
    ]
    values: list[torch.Tensor] = []
    try:
        for pointer, own, rid in requests:
            values.append(_take(pointer, own, pointer.location.await_reply(rid)))
    except KeyboardInterrupt:
        _keep_for_next_get(requests, values)
        raise
    finally:
        for pointer, _, rid in requests[len(values):]:
            pointer.location.abandon(rid)  # after an error: its reply is not wanted
    locations = {id(p.location): p.location for p in pointers}.values()
    for pointer, own, _ in requests:
        pointer.location.unreceived.discard(own.ref.id)
    for location in locations:
        if not location.unreceived:  # (else an interrupted get()'s object waits set aside)
            location.gets_done += 1  # its next fetch frees what this one set aside there
    if any(_big(value) for value in values):
        for location in locations:
            location.flush()  # the deletes of big tensors set aside, at once
    if pointers and sync_point:
        # An op issued before this get() whose failure was reported just before the reply
        # (an in-place write that failed at the worker leaves its target unchanged): raised
        # here, with the values kept on their pointers for the next get() (as after an
        # interrupt): the error of an unrelated op must not cost the user this data.
        try:
            pointers[0].location.node.raise_pending()
        except ZsyftError:
            for pointer, value in zip(pointers, values, strict=True):
                pointer.__dict__[KEPT] = value
            raise
    return values


def _take(pointer: PointerTensor, own: PointerTensor, value: Any) -> torch.Tensor:
    """`pointer`'s value from the reply to the fetch of `own` (its object, or a copy). The
    pointer gives up its object only once the value is made (fetching its gradient may
    fail): until then the worker keeps the object set aside, and get() can fetch it again."""
    received = pointer._received(value)
    if _big(value):
        own.ref.release()  # set aside at the worker in case this reply got lost: free it now
    else:  # a pointer's reply handed its ownership over; a tensor is freed at the next get()
        own.ref.forget()
    if own is not pointer:  # the object stays with the other pointers to it
        pointer.ref.drop(pointer)
        pointer.ref = RemoteRef.retrieved(pointer.location, pointer.ref.id)
    release_dropped_base(pointer)
    return received


def _big(value: Any) -> bool:
    return type(value) is torch.Tensor and value.nbytes >= PROMPT_DELETE_BYTES


def _keep_for_next_get(requests: Sequence[tuple], values: list[torch.Tensor]) -> None:
    """Interrupted: take the replies already on their way (for a second; a second interrupt
    stops this too) and keep every value received on its pointer. A reply still coming after
    that is dropped; the worker set its tensor aside, so the next get() fetches it again."""
    deadline = time.monotonic() + KEEP_WAITING_S
    for pointer, own, rid in requests[len(values):]:
        if pointer.location.reply_lost(rid):  # the worker kept a tensor: the next get() has it
            break
        try:
            reply = pointer.location.await_reply(rid, max(deadline - time.monotonic(), 0.0))
        except ZsyftError:  # an error or no answer in time: that fetch is abandoned
            break
        values.append(_take(pointer, own, reply))
    for (pointer, _, _), value in zip(requests, values, strict=False):
        pointer.__dict__[KEPT] = value
    for pointer, own, _ in requests[len(values):]:  # set aside in this round: keep the round
        pointer.location.unreceived.add(own.ref.id)


def _own_copy(pointer: PointerTensor) -> PointerTensor:
    """What `pointer.get()` fetches and deletes: the pointed-at object itself, or a copy made
    at its worker when another pointer wraps the same object (`x.detach().get()`,
    `x.data.get()` must leave `x` usable, as in torch)."""
    if not pointer.ref.shared_beyond(pointer):
        return pointer
    with torch.no_grad():
        return torch.ops.aten.clone.default(pointer)
