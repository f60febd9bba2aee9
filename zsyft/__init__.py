"""zsyft: private, decentralized deep learning in PyTorch across real worker processes.

    import torch, zsyft as sy
    hook = sy.TorchHook(torch)
    bob = sy.VirtualWorker(hook, id="bob")
    x = torch.tensor([1, 2, 3, 4, 5]).send(bob)
    (x + x).sum().get()   # tensor(30)

The exceptions are imported eagerly; everything else on first use, so that tools which only
need a small part (the `zsyft` command line, `zsyft launch`) do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from zsyft.errors import (
    AuthenticationError,
    ClusterFileError,
    KeyFileError,
    LaunchError,
    ObjectLostError,
    ObjectNotFoundError,
    OpNotAllowedError,
    PointerUsageError,
    ProtocolError,
    ProtocolUnavailableError,
    RemoteError,
    UnsupportedOpError,
    WorkerBusyError,
    WorkerError,
    WorkerLostError,
    WorkerUnavailableError,
    ZsyftError,
)

__version__ = "0.1.0"

_LAZY = {
    "TorchHook": "zsyft.hook",
    "VirtualWorker": "zsyft.workers",
    "connect": "zsyft.workers",
    "WorkerHandle": "zsyft.remote.handle",
    "LocalNode": "zsyft.remote.node",
    "PointerTensor": "zsyft.tensors.pointer",
    "FixedPrecisionTensor": "zsyft.tensors.fixed_precision",
    "SharedTensor": "zsyft.tensors.shared",
    "EncodingOverflowError": "zsyft.mpc.encoding",
}


def __getattr__(name: str) -> Any:
    if name == "local_worker":
        from zsyft.remote.node import local_node

        value: Any = local_node()
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'zsyft' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def sync() -> None:
    """Wait until every worker ran everything sent so far; raise the first remote error."""
    from zsyft.remote.node import local_node

    local_node().sync()


__all__ = [
    "AuthenticationError",
    "ClusterFileError",
    "EncodingOverflowError",
    "FixedPrecisionTensor",
    "KeyFileError",
    "LaunchError",
    "LocalNode",
    "ObjectLostError",
    "ObjectNotFoundError",
    "OpNotAllowedError",
    "PointerTensor",
    "PointerUsageError",
    "ProtocolError",
    "ProtocolUnavailableError",
    "RemoteError",
    "SharedTensor",
    "TorchHook",
    "UnsupportedOpError",
    "VirtualWorker",
    "WorkerBusyError",
    "WorkerError",
    "WorkerHandle",
    "WorkerLostError",
    "WorkerUnavailableError",
    "ZsyftError",
    "__version__",
    "connect",
    "local_worker",
    "sync",
]
