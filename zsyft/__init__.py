"""zsyft: private, decentralized deep learning in PyTorch across real worker processes.

import torch, zsyft as sy
hook = sy.TorchHook(torch)
bob = sy.VirtualWorker(hook, id="bob")
x = torch.tensor([1, 2, 3, 4, 5]).send(bob)
(x + x).sum().get()   # tensor(30)
"""

from __future__ import annotations

from zsyft.errors import (
    ClusterFileError,
    LaunchError,
    ObjectNotFoundError,
    OpNotAllowedError,
    PointerUsageError,
    ProtocolError,
    RemoteError,
    WorkerError,
    WorkerLostError,
    WorkerUnavailableError,
    ZsyftError,
)

__version__ = "0.1.0"

from zsyft.hook import TorchHook
from zsyft.remote.handle import WorkerHandle
from zsyft.remote.node import LocalNode, local_node
from zsyft.tensors.pointer import PointerTensor
from zsyft.workers import VirtualWorker, connect

local_worker: LocalNode = local_node()


def sync() -> None:
    """Wait until every worker ran everything sent so far; raise the first remote error."""
    local_node().sync()


__all__ = [
    "ClusterFileError",
    "LaunchError",
    "LocalNode",
    "ObjectNotFoundError",
    "OpNotAllowedError",
    "PointerTensor",
    "PointerUsageError",
    "ProtocolError",
    "RemoteError",
    "TorchHook",
    "VirtualWorker",
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
