"""The worker process entry point: the runtime's worker, able to hold pointers (chains).

`launcher/bin/zsyft-worker` calls `main()`. It lives in the API layer because it wires the
runtime (below) to the pointer code (above it) that lets a worker act as a client.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from zsyft.remote.interrupts import hold_sigint
    from zsyft.runtime.process import main as run_worker
    from zsyft.tensors.worker_peer import WorkerPeer

    hold_sigint(False)  # the worker's SIGINT handler only sets its stop flag
    return run_worker(argv, peer_factory=WorkerPeer)


def run_and_exit(argv: list[str] | None = None) -> None:
    """`main()`, then leave without the interpreter's teardown: by then the worker closed its
    sockets and removed its files, and tearing torch down takes about a second, which a
    launcher stopping many workers on few cores would wait for."""
    import logging
    import os
    import sys

    code = main(argv)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        if not stream.closed:  # stdout closes after the readiness line
            stream.flush()
    os._exit(code)
