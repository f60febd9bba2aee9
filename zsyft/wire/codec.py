"""Encode messages to ZeroMQ frames and decode them back, with limits and no code on the wire.

`encode(kind, rid, body)` returns `[header, *buffers]`. The header is msgpack; a tensor in the
body becomes an extension value `[buffer index, dtype code, shape]` and its bytes travel as
their own frame. ZeroMQ sends a large frame after `encode` returned, from the memory it was
given: a large tensor is copied first (its owner may change it meanwhile, `acc += buf` in a
loop), unless it is wrapped in `Handover` (its sender gives it up) and no other tensor shares
its memory; then the frame is a view of the tensor's own memory (zero-copy). Dtypes,
devices, layouts, memory formats and complex numbers are extension values too, so nothing
from the wire is ever turned into code: the decoder only builds plain data and tensors.

Object ids are 16-byte msgpack `bin` values (aten ops never take bytes arguments, so inside a
command a `bin` is always an object reference).

`decode(frames)` checks every limit in `Limits` and raises `ProtocolError` naming the broken
rule; callers turn that into an error reply instead of crashing.

A tensor larger than `MAX_FRAME_BYTES` travels in several frames (see there why).
Bursts of messages are packed into BATCH messages by `batching`.
"""

from __future__ import annotations

import ctypes
import functools
import struct
import threading
from collections.abc import Sequence
from typing import Any

import msgpack
import torch

from zsyft.errors import ProtocolError
from zsyft.wire.messages import (
    DEFAULT_LIMITS,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    ZERO_COPY_THRESHOLD,
    Limits,
    Message,
)

_EXT_TENSOR, _EXT_DTYPE, _EXT_DEVICE, _EXT_LAYOUT, _EXT_MEMFMT, _EXT_COMPLEX = 1, 3, 4, 5, 6, 7

DTYPES: tuple[torch.dtype, ...] = (
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.complex64, torch.complex128, torch.uint16, torch.uint32, torch.uint64,
)  # fmt: skip
_DTYPE_CODE = {dtype: code for code, dtype in enumerate(DTYPES)}
_LAYOUTS = (torch.strided, torch.sparse_coo)
_MEMORY_FORMATS = (
    torch.contiguous_format, torch.preserve_format, torch.channels_last, torch.channels_last_3d,
)  # fmt: skip


class Handover:
    """A tensor its sender gives up to `encode`: nobody changes it while ZeroMQ sends it, so
    when no other tensor shares its memory it goes out zero-copy (see `tensor_buffer`)."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def _sole_owner(tensor: torch.Tensor) -> bool:
    """Whether no other tensor (a view, an alias) shares `tensor`'s memory. The use count
    includes the storage object this check makes."""
    return torch._C._storage_Use_Count(tensor.untyped_storage()._cdata) <= 2


def tensor_buffer(tensor: torch.Tensor, handed_over: bool = False) -> memoryview | bytes:
    """The bytes of a dense contiguous CPU tensor: a copy when small; when large, a view of
    the memory of the tensor itself (`handed_over`, sole owner of its memory) or of a copy.

    The view keeps its tensor alive (the ctypes array holds a reference), so ZeroMQ may send
    it after the caller dropped the tensor.
    """
    nbytes = tensor.numel() * tensor.element_size()
    if nbytes == 0:
        return b""
    if nbytes >= ZERO_COPY_THRESHOLD and not (handed_over and _sole_owner(tensor)):
        tensor = tensor.clone()  # the caller may change its tensor before ZeroMQ sends it
    array = (ctypes.c_char * nbytes).from_address(tensor.data_ptr())
    if nbytes < ZERO_COPY_THRESHOLD:
        return bytes(array)
    array._zsyft_keepalive = tensor  # type: ignore[attr-defined]
    return memoryview(array)


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor whose memory holds `tensor`'s values in order: itself when it is dense and
    contiguous (every protocol message and reply: no new tensor objects), else a copy."""
    if type(tensor) is not torch.Tensor and not isinstance(tensor, torch.nn.Parameter):
        raise ProtocolError(f"cannot serialize a {type(tensor).__name__} as plain tensor data")
    if tensor.layout is not torch.strided or not tensor.is_cpu:
        raise ProtocolError("only dense CPU tensors can be sent; call .to_dense().cpu() first")
    if tensor.is_conj() or tensor.is_neg():  # lazy conjugation/negation: materialize it
        tensor = tensor.resolve_conj().resolve_neg()
    return tensor.contiguous()  # bytes are read through data_ptr: no detach needed


class _Encoder:
    """Packs headers; tensors met on the way become buffer frames. One per thread is kept for
    reuse (`_spare`): building a msgpack Packer costs as much as packing a small header."""

    __slots__ = ("buffers", "packer")

    def __init__(self) -> None:
        self.buffers: list[Any] = []
        self.packer = msgpack.Packer(default=self.default, use_bin_type=True)

    def default(self, obj: Any) -> Any:
        handed_over = type(obj) is Handover
        if handed_over or isinstance(obj, torch.Tensor):
            given = obj.tensor if handed_over else obj
            tensor = _plain(given)
            if tensor.dtype not in _DTYPE_CODE:
                raise ProtocolError(f"dtype {tensor.dtype} cannot be sent")
            index = len(self.buffers) + 1
            own = handed_over or tensor is not given  # _plain's copy is nobody else's
            self.buffers.extend(_frames_of(tensor_buffer(tensor, own)))
            return _tensor_ext(index, _DTYPE_CODE[tensor.dtype], tensor.shape)
        if isinstance(obj, torch.dtype):
            return msgpack.ExtType(_EXT_DTYPE, bytes([_DTYPE_CODE[obj]]))
        if isinstance(obj, torch.device):
            if obj.type != "cpu":  # refused here, at the user's call, not by the worker later
                raise ProtocolError(
                    f"device {str(obj)!r} is not available on workers: they compute on the "
                    "CPU; use device='cpu' or leave it out"
                )
            return msgpack.ExtType(_EXT_DEVICE, b"cpu")  # "cpu:0" is the same device
        if isinstance(obj, torch.layout):
            return msgpack.ExtType(_EXT_LAYOUT, bytes([_LAYOUTS.index(obj)]))
        if isinstance(obj, torch.memory_format):
            return msgpack.ExtType(_EXT_MEMFMT, bytes([_MEMORY_FORMATS.index(obj)]))
        if isinstance(obj, complex):
            return msgpack.ExtType(_EXT_COMPLEX, struct.pack("<dd", obj.real, obj.imag))
        raise ProtocolError(f"cannot serialize a value of type {type(obj).__name__}")


def _frames_of(buffer: memoryview | bytes) -> list[memoryview | bytes]:
    """A tensor's bytes as frames of at most `MAX_FRAME_BYTES` (views, not copies)."""
    if type(buffer) is bytes or buffer.nbytes <= MAX_FRAME_BYTES:
        return [buffer]
    return [buffer[i:i + MAX_FRAME_BYTES] for i in range(0, buffer.nbytes, MAX_FRAME_BYTES)]


@functools.lru_cache(maxsize=1024)
def _tensor_ext(index: int, dtype_code: int, shape: torch.Size) -> msgpack.ExtType:
    """A tensor's descriptor `[buffer index, dtype code, shape]` (a protocol's messages repeat
    a few of them)."""
    return msgpack.ExtType(_EXT_TENSOR, msgpack.packb([index, dtype_code, list(shape)]))


_spare = threading.local()  # .encoder: this thread's `_Encoder` when not in use


def encode(kind: int, rid: int, body: Any, on_behalf: str | None = None) -> list[Any]:
    """Frames for one message: the msgpack header, then one frame per tensor in `body`.

    `on_behalf` (a client's public key) is set by a worker forwarding a client's work.
    """
    encoder = getattr(_spare, "encoder", None) or _Encoder()  # none spare: nested or first
    _spare.encoder = None
    fields = [PROTOCOL_VERSION, kind, rid, body]
    if on_behalf is not None:
        fields.append(on_behalf)
    try:
        header = encoder.packer.pack(fields)  # the packer empties itself, also after an error
    except (OverflowError, ValueError, TypeError) as exc:
        raise ProtocolError(f"cannot encode message: {exc}") from exc
    finally:
        buffers, encoder.buffers = encoder.buffers, []
        _spare.encoder = encoder
    return [header, *buffers]


class _Decoder:
    __slots__ = ("buffers", "limits")

    def __init__(self, buffers: Sequence[Any], limits: Limits) -> None:
        self.buffers = buffers
        self.limits = limits

    def ext_hook(self, code: int, data: bytes) -> Any:
        try:
            if code == _EXT_TENSOR:
                return self._tensor(data)
            if code == _EXT_DTYPE:
                return DTYPES[data[0]]
            if code == _EXT_DEVICE:
                device = data.decode()
                if device != "cpu":
                    raise ProtocolError(f"device {device!r} is not available on workers")
                return torch.device(device)
            if code == _EXT_LAYOUT:
                return _LAYOUTS[data[0]]
            if code == _EXT_MEMFMT:
                return _MEMORY_FORMATS[data[0]]
            if code == _EXT_COMPLEX:
                real, imag = struct.unpack("<dd", data)
                return complex(real, imag)
        except (IndexError, struct.error, UnicodeDecodeError) as exc:
            raise ProtocolError(f"malformed extension value (code {code}): {exc}") from exc
        raise ProtocolError(f"unknown extension code {code}")

    def _tensor(self, data: bytes) -> torch.Tensor:
        index, dtype, shape, numel = _tensor_descriptor(data)
        if index > len(self.buffers):
            raise ProtocolError(f"tensor refers to missing buffer frame {index}")
        if numel > self.limits.max_tensor_numel:
            raise ProtocolError(f"tensor of {numel} elements exceeds the limit")
        if numel * dtype.itemsize > MAX_FRAME_BYTES:
            flat = self._joined(index, numel, dtype)
            return flat if len(shape) == 1 else flat.reshape(shape)
        buffer = self.buffers[index - 1]
        view = buffer.buffer if hasattr(buffer, "buffer") else memoryview(buffer)
        nbytes = numel * dtype.itemsize
        if view.nbytes != nbytes:
            raise ProtocolError(
                f"tensor {list(shape)} {dtype} needs {nbytes} bytes, its frame has {view.nbytes}"
            )
        if nbytes == 0:
            return torch.empty(shape, dtype=dtype)
        if isinstance(buffer, bytes):  # small frames arrive as immutable bytes: copy
            flat = torch.frombuffer(bytearray(view), dtype=dtype)
        else:
            # A large frame's memory belongs to its zmq message, which is ours alone and
            # writable: the tensor uses it in place (zero-copy) and keeps the frame alive.
            raw = torch.frombuffer(view, dtype=torch.uint8)
            if raw.data_ptr() % dtype.itemsize:
                raw = raw.clone()  # misaligned for this dtype: one copy
            flat = raw.view(dtype)
        return flat if len(shape) == 1 else flat.reshape(shape)  # 1-d: already its shape


    def _joined(self, index: int, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """A tensor whose bytes came in several frames (`_frames_of`), copied into one."""
        nbytes = numel * dtype.itemsize
        count = -(-nbytes // MAX_FRAME_BYTES)
        if index + count - 1 > len(self.buffers):
            raise ProtocolError(
                f"tensor of {nbytes} bytes needs {count} frames from frame {index}, the message "
                f"has {len(self.buffers)}"
            )
        flat = torch.empty(numel, dtype=dtype)
        out = flat.view(torch.uint8)
        for i in range(count):
            buffer = self.buffers[index - 1 + i]
            if isinstance(buffer, bytes):  # a small last frame: immutable, torch warns on it
                buffer = bytearray(buffer)
            view = buffer.buffer if hasattr(buffer, "buffer") else memoryview(buffer)
            expected = min(MAX_FRAME_BYTES, nbytes - i * MAX_FRAME_BYTES)
            if view.nbytes != expected:
                raise ProtocolError(
                    f"frame {index + i} of a tensor of {nbytes} bytes has {view.nbytes} bytes, "
                    f"not {expected}"
                )
            start = i * MAX_FRAME_BYTES
            out[start:start + expected].copy_(torch.frombuffer(view, dtype=torch.uint8))
        return flat


@functools.lru_cache(maxsize=1024)
def _tensor_descriptor(data: bytes) -> tuple[int, torch.dtype, tuple[int, ...], int]:
    """A tensor descriptor's (buffer index >= 1, dtype, shape, element count), checked (the
    checks that depend on the message, its frames and limits, are the caller's)."""
    meta = msgpack.unpackb(data, max_array_len=64, max_map_len=0, max_str_len=0)
    if not (isinstance(meta, list) and len(meta) == 3 and isinstance(meta[2], list)):
        raise ProtocolError("tensor descriptor must be [buffer, dtype, shape]")
    index, dtype_code, shape = meta
    if not (type(index) is int and index >= 1):
        raise ProtocolError(f"tensor refers to missing buffer frame {index}")
    if not (type(dtype_code) is int and 0 <= dtype_code < len(DTYPES)):
        raise ProtocolError(f"unknown dtype code {dtype_code}")
    if not all(type(n) is int and n >= 0 for n in shape):
        raise ProtocolError(f"invalid tensor shape {shape}")
    numel = 1
    for n in shape:
        numel *= n
    return index, DTYPES[dtype_code], tuple(shape), numel


# Bytes that may open a msgpack container (fixmap, fixarray, array16/32, map16/32). A header
# with at most `max_depth` of them cannot nest deeper, so the walk below is skipped (one C call
# instead of a Python walk for every ordinary message).
_NOT_CONTAINER_BYTES = bytes(b for b in range(256) if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF))


def _check_depth(obj: Any, max_depth: int) -> None:
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise ProtocolError(f"message nesting deeper than {max_depth} levels")
        if isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, list | dict))
        elif isinstance(item, dict):
            for key, value in item.items():
                if isinstance(key, list | dict) or isinstance(value, list | dict):
                    stack.append((key, depth + 1))
                    stack.append((value, depth + 1))


def _container_budget(limit: int) -> dict[str, Any]:
    """msgpack hooks that count arrays and maps as they are built and stop past `limit` (only
    used when a cheap byte count says the header might hold that many)."""
    count = 0

    def counted(value: Any) -> Any:
        nonlocal count
        count += 1
        if count > limit:
            raise ProtocolError(f"message holds more than {limit} lists and maps")
        return value

    return {"list_hook": counted, "object_hook": counted}


@functools.lru_cache(maxsize=8)
def _unpack_options(limits: Limits) -> dict[str, Any]:
    """msgpack's own bounds for a header under `limits` (built once per `Limits`)."""
    return {
        "strict_map_key": False,
        "max_str_len": limits.max_str_len,
        "max_bin_len": limits.max_header_bytes,
        "max_array_len": limits.max_container_len,
        "max_map_len": limits.max_container_len,
        "max_ext_len": 1024,
    }


def _request_id(header: bytes, options: dict[str, Any]) -> int:
    """The request id of a header whose values failed to decode (0 if unreadable)."""
    try:
        obj = msgpack.unpackb(header, **options)
    except Exception:
        return 0
    return obj[2] if isinstance(obj, list) and len(obj) > 2 and type(obj[2]) is int else 0


def decode(frames: Sequence[Any], limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode `[header, *buffers]` (bytes or zmq.Frame) into a `Message`, enforcing `limits`."""
    if not frames:
        raise ProtocolError("empty message")
    if len(frames) > limits.max_frames:
        raise ProtocolError(f"message has {len(frames)} frames; the limit is {limits.max_frames}")
    header = frames[0]
    if type(header) is not bytes and hasattr(header, "bytes"):  # a zmq.Frame
        header = header.bytes
    if len(header) > limits.max_header_bytes:
        raise ProtocolError(
            f"header of {len(header)} bytes exceeds the limit of {limits.max_header_bytes}"
        )
    buffers = frames[1:]
    if buffers:
        total = sum(
            len(f) if type(f) is bytes else len(f.buffer) if hasattr(f, "buffer") else len(f)
            for f in buffers
        )
        if total > limits.max_message_bytes:
            raise ProtocolError(f"message of {total} bytes exceeds the limit")
    decoder = _Decoder(buffers, limits)
    markers = len(header.translate(None, _NOT_CONTAINER_BYTES))  # >= the number of containers
    options = _unpack_options(limits)
    if markers > limits.max_containers:
        options = dict(options, **_container_budget(limits.max_containers))
    try:
        obj = msgpack.unpackb(header, ext_hook=decoder.ext_hook, **options)
    except ProtocolError as exc:  # a bad value inside: the reply still goes to its request
        exc.rid = _request_id(header, options)
        raise
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ProtocolError(f"header is not valid msgpack: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(obj, list) and len(obj) in (4, 5)):
        raise ProtocolError("header must be [version, kind, request id, body(, on behalf of)]")
    version, kind, rid, body = obj[:4]
    on_behalf = obj[4] if len(obj) == 5 else None
    if on_behalf is not None and not isinstance(on_behalf, str):
        raise ProtocolError("the on-behalf-of field must be a client key string")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {version!r} is not {PROTOCOL_VERSION}; use one zsyft version"
        )
    if type(kind) is not int or type(rid) is not int:
        raise ProtocolError("message kind and request id must be integers")
    if isinstance(body, list | dict) and markers > limits.max_depth:
        _check_depth(body, limits.max_depth)
    return Message(kind, rid, body, on_behalf)
