"""The `zsyft` command line: launch, status, stop and bench.

    zsyft launch bob alice james      # foreground; Ctrl-C or SIGTERM stops every worker
    zsyft status                      # up/down and object count of each launched worker
    zsyft stop                        # stop a cluster started elsewhere
    zsyft bench                       # zsyft against bare pyzmq, as ratios measured in one run
    zsyft bench --only encrypted      # just the rows whose key starts with "encrypted"
"""

from __future__ import annotations

import ipaddress
import math
import os
import signal
import socket
import sys
import time
from pathlib import Path

import click

from launcher import cluster
from launcher.supervisor import STOP_SIGNALS, Supervisor, process_is, validate_names
from zsyft.errors import ClusterFileError, KeyFileError, LaunchError, WorkerError
from zsyft.runtime.process import LEASE_ENV, THREADS_ENV
from zsyft.wire.messages import Kind

CLUSTER_FILE = click.option(
    "--cluster-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the cluster is recorded (default: $ZSYFT_HOME/cluster.json, ~/.zsyft/...).",
)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


@click.group()
@click.version_option(package_name="zsyft")
def main() -> None:
    """zsyft: private deep learning across worker processes."""


@main.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="First port (one per worker, counting up); default (or 0): free ports "
              "chosen by the system.")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where worker logs go (default: $ZSYFT_HOME/logs).")
@click.option("--key-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="CURVE key directory: worker and client key pairs, and the public keys of "
              "every client allowed in (default: $ZSYFT_HOME/keys).")
@click.option("--restart", is_flag=True,
              help="Start a worker again when it dies (same address and key; what it held is "
              "lost), with a backoff doubling from 0.5 s to 8 s.")
@click.option("--max-restarts", type=click.IntRange(min=0), default=5, show_default=True,
              help="With --restart: give up on a worker after this many restarts.")
@click.option("--lease", type=float, default=None,
              help="Seconds a disconnected client's objects are kept for it (default 60).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads per worker (default 1: the workers share this host's cores).")
@CLUSTER_FILE
def launch(names: tuple[str, ...], host: str, port: int | None, log_dir: Path | None,
           key_dir: Path | None, restart: bool, max_restarts: int, lease: float | None,
           threads: int | None, cluster_file: Path | None) -> None:
    """Start the named workers and keep them running until Ctrl-C or SIGTERM."""
    try:
        validate_names(list(names))
    except LaunchError as exc:
        raise click.UsageError(str(exc)) from None
    _check_host(host)
    if port == 0:
        port = None
    if port is not None and port + len(names) - 1 > 65535:
        raise click.UsageError(
            f"--port {port} leaves no room for {len(names)} workers (ports count up to "
            f"{port + len(names) - 1}, over 65535); choose a lower first port"
        )
    if lease is not None:
        if not (math.isfinite(lease) and lease >= 0):
            raise click.BadParameter(f"{lease} is not a finite number of seconds >= 0",
                                     param_hint="'--lease'")
        os.environ[LEASE_ENV] = str(lease)  # inherited by the workers
    if threads is not None:
        os.environ[THREADS_ENV] = str(threads)
    supervisor = Supervisor(list(names), host=host, port=port, cluster_file=cluster_file,
                            log_dir=log_dir, key_dir=key_dir, restart=restart,
                            max_restarts=max_restarts)
    started = time.monotonic()
    for signum in (signal.SIGTERM, signal.SIGHUP):  # during startup too: start() cleans up
        signal.signal(signum, _interrupt)
    try:
        records = supervisor.start()
    except (LaunchError, KeyFileError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # a log or key directory that cannot be created or written
        raise click.ClickException(
            f"cannot use {exc.filename or 'a directory'}: {exc.strerror or exc}"
        ) from None
    except KeyboardInterrupt:
        click.echo("interrupted while starting: stopped all workers", err=True)
        raise SystemExit(130) from None
    rows = [["NAME", "PID", "ADDRESS"]] + [[r.name, str(r.pid), r.address] for r in records]
    try:  # from here on the workers run: whatever happens, they are stopped (a closed pipe)
        click.echo(_table(rows))
        click.echo(f"{len(records)} worker(s) ready in {time.monotonic() - started:.1f} s; "
                   f"cluster file {supervisor.cluster_file}; keys in {supervisor.key_dir}. "
                   "Ctrl-C stops them.", err=True)
        supervisor.run_until_signal(on_exit=lambda text: click.echo(text, err=True))
    finally:
        for signum in STOP_SIGNALS:  # a second Ctrl-C must not cut the stopping short
            signal.signal(signum, signal.SIG_IGN)
        supervisor.stop()
        click.echo("stopped all workers", err=True)


def _check_host(host: str) -> None:
    """Refuse a --host ZeroMQ cannot listen on (an IP address, `*`, `localhost` or a network
    interface's name), before anything starts, saying what would work."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(bare)
        return
    except ValueError:
        if bare in ("*", "localhost") or bare in {name for _, name in socket.if_nameindex()}:
            return
    raise click.BadParameter(
        f"{host!r} is not an address of this host; give an IP address (127.0.0.1 or ::1: this "
        "host only; 0.0.0.0 or ::: every interface) or an interface name",
        param_hint="'--host'",
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@main.command()
@CLUSTER_FILE
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Seconds to wait for the workers' answers.")
def status(cluster_file: Path | None, timeout: float) -> None:
    """Ping every launched worker: up or down, and how many objects it holds."""
    from zsyft.remote.handle import WorkerHandle
    from zsyft.remote.node import LocalNode
    from zsyft.transport.keys import client_pair

    try:
        recorded = cluster.read(cluster_file)
    except ClusterFileError as exc:
        raise click.ClickException(str(exc)) from None
    if not recorded.key_dir.is_dir():
        raise click.ClickException(
            f"the key directory {recorded.key_dir} named in the cluster file is missing: "
            "the workers cannot be reached without its client key; restart them with "
            "`zsyft launch`"
        )
    try:
        client = client_pair(recorded.key_dir)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    node = LocalNode("zsyft-status")
    handles = [
        WorkerHandle(node, r.name, r.address, r.pid, public_key=r.public_key, client_keys=client)
        for r in recorded.workers.values()
    ]
    try:
        # All pings leave first, so a cluster with dead workers answers within one timeout.
        pending = [(handle, handle.send_request(Kind.PING, None)) for handle in handles]
        deadline = time.monotonic() + timeout
        pongs = {}
        for handle, rid in pending:
            try:
                pongs[handle.id] = handle.await_reply(rid, max(deadline - time.monotonic(), 0.01))
            except WorkerError:
                pass
    finally:
        for handle in handles:
            handle.close()
    rows = [["NAME", "PID", "ADDRESS", "STATE", "OBJECTS", "RESTARTS"]]
    for record in recorded.workers.values():
        pong = pongs.get(record.name)
        if pong is not None:
            state, pid, objects = "up", str(pong["pid"]), str(pong["objects"])
        else:
            state = record.state if record.state != "up" else "down"
            pid, objects = str(record.pid), "-"
        rows.append([record.name, pid, record.address, state, objects, str(record.restarts)])
    click.echo(_table(rows))
    sys.exit(0 if len(pongs) == len(recorded.workers) else 1)


@main.command()
@CLUSTER_FILE
@click.option("--timeout", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds to wait for the workers to exit before killing them.")
def stop(cluster_file: Path | None, timeout: float) -> None:
    """Stop a cluster started by `zsyft launch` (in another terminal or in the background)."""
    path = cluster_file or cluster.default_path()
    starting = cluster.starting_launch(path)
    if starting is not None and process_is(starting, "launch"):
        os.kill(starting, signal.SIGTERM)  # it stops the workers it started so far
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and cluster.launch_running(path):
            time.sleep(0.05)
        click.echo(f"stopped the launch (pid {starting}) that was still starting its workers")
        return
    try:
        recorded = cluster.read(path)
    except ClusterFileError as exc:
        raise click.ClickException(str(exc)) from None
    # Without a running launch, the recorded pids are stale (its workers died with it) and
    # may belong to unrelated processes now: nothing is signalled.
    launched = cluster.launch_running(path)
    running = [w.name for w in recorded.workers.values()
               if launched and process_is(w.pid, "zsyft-worker")]
    stopped_launch = launched and process_is(recorded.launcher_pid, "launch")
    if stopped_launch:
        os.kill(recorded.launcher_pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    pids = [w.pid for w in recorded.workers.values()] if launched else []
    while time.monotonic() < deadline and any(process_is(p, "zsyft-worker") for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if process_is(pid, "zsyft-worker"):
            os.kill(pid, signal.SIGKILL)
    cluster.remove(path)
    if running:
        click.echo(f"stopped {', '.join(running)}")
    elif stopped_launch:
        click.echo(f"stopped the launch (pid {recorded.launcher_pid}); none of its workers "
                   f"({', '.join(recorded.workers)}) was running")
    else:
        click.echo(f"no worker of {path} was running ({', '.join(recorded.workers)}); "
                   "removed the stale cluster file")


@main.command()
@click.option("--quick", is_flag=True, help="Fewer repetitions (for a smoke test).")
@click.option(
    "--only", "only", multiple=True, metavar="KEY",
    help="Measure only the rows whose key starts with KEY (repeatable), e.g. encrypted-matmul, "
    "encrypted, round-trip-ipc, chain-ipc.",
)
def bench(quick: bool, only: tuple[str, ...]) -> None:
    """Measure zsyft against bare pyzmq in one run and print the ratios."""
    from zsyft.bench.runner import case_keys, run

    keys = case_keys(quick)
    unknown = [k for k in only if not any(key.startswith(k) for key in keys)]
    if unknown:
        raise click.UsageError(
            f"no benchmark row's key starts with {', '.join(unknown)}; the keys: {', '.join(keys)}"
        )
    run(quick=quick, echo=click.echo, only=only)


if __name__ == "__main__":
    main()
