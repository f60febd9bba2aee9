"""Checks of the bodies of the MPC messages a worker receives (setup, deal, seed, run):
ids, worker descriptions and party lists, each refused with a `TypeError` naming the rule."""

from __future__ import annotations

from typing import Any

from zsyft.transport.keys import is_public_key
from zsyft.wire.messages import is_object_id

MAX_DEALT = 64  # op ids one DEAL (and its MATERIAL) may carry


def checked_id(value: Any) -> bytes:
    """A 16-byte session or op id."""
    if not is_object_id(value):
        raise TypeError("a session or op id must be 16 bytes")
    return value


def worker_entry(value: Any) -> dict[str, Any]:
    """A worker described as {name, address, key}."""
    if not (
        isinstance(value, dict)
        and isinstance(value.get("name"), str)
        and isinstance(value.get("address"), str)
        and (value.get("key") is None or is_public_key(value.get("key")))
    ):
        raise TypeError("a worker is described as {name, address, key}")
    return {"name": value["name"], "address": value["address"], "key": value.get("key")}


def op_ids(value: Any) -> list[bytes]:
    """The op ids a DEAL or MATERIAL names: one id, or a list of 1 to `MAX_DEALT` of them."""
    ids = value if isinstance(value, list) else [value]
    if not 1 <= len(ids) <= MAX_DEALT:
        raise TypeError(f"a deal names 1 to {MAX_DEALT} op ids")
    return [checked_id(i) for i in ids]


def output_ids(value: Any) -> list[bytes]:
    """The output ids of an MPC_RUN: one id, or a list of them for several outputs."""
    ids = value if isinstance(value, list) else [value]
    if not (ids and all(is_object_id(i) for i in ids)):
        raise TypeError("the output must be an object id or a list of them")
    return ids


def party_list(value: Any) -> list[dict[str, str]]:
    """The parties of a session: at least two workers."""
    if not (isinstance(value, list) and len(value) >= 2):
        raise TypeError("parties must be a list of at least two {name, address, key}")
    return [worker_entry(p) for p in value]
