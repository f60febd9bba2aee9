"""The worker process entry point: the runtime's worker, able to hold pointers (chains).

`launcher/bin/zsyft-worker` calls `main()`. It lives in the API layer because it wires the
runtime (below) to the pointer code (above it) that lets a worker act as a client.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from zsyft.runtime.process import main as run_worker
    from zsyft.tensors.worker_peer import WorkerPeer

    return run_worker(argv, peer_factory=WorkerPeer)
