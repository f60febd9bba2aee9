"""`zsyft launch`, `status` and `stop` as a user runs them from a shell."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import zsyft as sy
from tests.helpers import wait_until, zsyft_pids

ZSYFT = [sys.executable, "-m", "launcher.cli"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*ZSYFT, *args], capture_output=True, text=True, timeout=timeout)


class Launch:
    """A `zsyft launch` in the background, stopped (and checked) when the test ends."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.cluster_file = tmp_path / "cluster.json"
        self.proc = subprocess.Popen(
            [*ZSYFT, "launch", *args, "--cluster-file", str(self.cluster_file),
             "--log-dir", str(tmp_path / "logs")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def wait_ready(self) -> dict:
        assert wait_until(lambda: self.cluster_file.exists() or self.proc.poll() is not None, 30)
        assert self.proc.poll() is None, self.proc.stderr.read()
        return json.loads(self.cluster_file.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


@pytest.fixture
def launched(tmp_path):
    started = []

    def start(*args: str) -> Launch:
        launch = Launch(tmp_path, *args)
        started.append(launch)
        return launch

    yield start
    for launch in started:
        launch.stop()


def test_launch_prints_table_writes_cluster_file_and_sigterm_stops_all(launched):
    launch = launched("bob", "alice", "james")
    recorded = launch.wait_ready()
    workers = recorded["workers"]
    assert list(workers) == ["bob", "alice", "james"]
    pids = [w["pid"] for w in workers.values()]
    assert set(pids) <= zsyft_pids()
    assert all(w["address"].startswith("tcp://127.0.0.1:") for w in workers.values())
    key_dir = Path(recorded["key_dir"])
    published = {p.read_text().strip() for p in key_dir.glob("*.key")}
    assert all(w["public_key"] in published for w in workers.values())
    assert (key_dir / "client.key_secret").stat().st_mode & 0o777 == 0o600
    secrets_before = set(key_dir.glob("*.key_secret"))

    launch.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    out, _ = launch.proc.communicate(timeout=10)
    assert time.monotonic() - started < 5
    assert launch.proc.returncode == 0
    header, *rows = out.strip().splitlines()
    assert header.split() == ["NAME", "PID", "ADDRESS"]
    assert [r.split()[0] for r in rows] == ["bob", "alice", "james"]
    assert not launch.cluster_file.exists()
    assert not (set(pids) & zsyft_pids())
    removed = secrets_before - set(key_dir.glob("*.key_secret"))
    assert len(removed) == 3 and (key_dir / "client.key_secret").exists()  # workers' pairs removed


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "hangup"])
def test_ctrl_c_or_closing_the_terminal_stops_every_worker(launched, how):
    launch = launched("w1", "w2")
    pids = [w["pid"] for w in launch.wait_ready()["workers"].values()]
    launch.proc.send_signal(how)
    _, err = launch.proc.communicate(timeout=5)
    assert wait_until(lambda: not (set(pids) & zsyft_pids()), 1)
    assert "stopped all workers" in err and not launch.cluster_file.exists()


def test_frozen_workers_are_stopped_within_one_grace_period(launched):
    launch = launched("f1", "f2", "f3")
    pids = [w["pid"] for w in launch.wait_ready()["workers"].values()]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # e.g. stuck in a long op: SIGTERM is not acted on
    launch.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    launch.proc.wait(10)
    assert wait_until(lambda: not (set(pids) & zsyft_pids()), 5)
    assert time.monotonic() - started < 5, "each worker waited out its own grace period"


def test_sigterm_while_workers_start_stops_them_all(launched):
    launch = launched("s1", "s2")
    assert wait_until(lambda: len(_launched_by(launch.proc.pid)) == 2, 10)
    workers = _launched_by(launch.proc.pid)  # importing torch: no cluster file yet
    assert launch.proc.poll() is None and not launch.cluster_file.exists()
    launch.proc.send_signal(signal.SIGTERM)
    assert launch.proc.wait(10) == 130
    assert "interrupted while starting" in launch.proc.stderr.read()
    assert wait_until(lambda: not (workers & zsyft_pids()), 1)


def _launched_by(parent: int) -> set[int]:
    return {pid for pid in zsyft_pids() if _parent_of(pid) == parent}


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_status_connect_and_stop(launched, hook):
    launch = launched("bob2", "alice2")
    launch.wait_ready()
    status = run("status", "--cluster-file", str(launch.cluster_file))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.strip().splitlines()
    assert lines[0].split() == ["NAME", "PID", "ADDRESS", "STATE", "OBJECTS", "RESTARTS"]
    assert all(line.split()[3:] == ["up", "0", "0"] for line in lines[1:])

    bob, alice = sy.connect("bob2", "alice2", cluster_file=launch.cluster_file)
    x = torch.tensor([1, 2, 3]).send(bob)
    assert torch.equal((x * 2).get(), torch.tensor([2, 4, 6]))
    chained = torch.tensor([5, 6]).send(bob).send(alice)  # alice dials bob over CURVE tcp
    assert torch.equal((chained + chained).get().get(), torch.tensor([10, 12]))
    assert torch.equal(chained.get().get(), torch.tensor([5, 6]))
    kept = torch.ones(2).send(alice)
    alice.sync()
    status = run("status", "--cluster-file", str(launch.cluster_file))
    assert [line.split()[4] for line in status.stdout.strip().splitlines()[1:]] == ["1", "1"]
    del kept

    stopped = run("stop", "--cluster-file", str(launch.cluster_file))
    assert stopped.returncode == 0 and "bob2" in stopped.stdout
    launch.proc.wait(5)
    for handle in (bob, alice):
        sy.local_worker.workers.pop(handle.id, None)
        handle.close()
    status = run("status", "--cluster-file", str(launch.cluster_file))
    assert status.returncode != 0 and "no cluster file" in status.stderr


def test_threads_option_sets_each_workers_torch_threads(launched, hook):
    assert run("launch", "w", "--threads", "0").returncode == 2  # usage error, nothing started
    launch = launched("bob3", "--threads", "2")
    launch.wait_ready()
    bob = sy.connect("bob3", cluster_file=launch.cluster_file)
    try:
        assert bob.ping()["threads"] == 2
    finally:
        sy.local_worker.workers.pop(bob.id, None)
        bob.close()


def test_status_reports_a_dead_worker_as_down(launched):
    launch = launched("up1", "down1")
    workers = launch.wait_ready()["workers"]
    os.kill(workers["down1"]["pid"], signal.SIGKILL)
    status = run("status", "--cluster-file", str(launch.cluster_file))
    states = {line.split()[0]: line.split()[3] for line in status.stdout.splitlines()[1:]}
    assert states == {"up1": "up", "down1": "down"} and status.returncode == 1


def test_stop_says_it_stopped_a_launch_whose_workers_all_died(launched):
    launch = launched("lone1")
    workers = launch.wait_ready()["workers"]
    os.kill(workers["lone1"]["pid"], signal.SIGKILL)
    assert wait_until(lambda: not zsyft_pids("zsyft-worker lone1"), 5)
    stopped = run("stop", "--cluster-file", str(launch.cluster_file))
    assert stopped.returncode == 0
    assert "stopped the launch" in stopped.stdout and "stale" not in stopped.stdout
    launch.proc.wait(5)


def test_connecting_again_keeps_the_handle_and_a_dead_worker_fails_at_once(launched, hook):
    launch = launched("again1", "dead1")
    workers = launch.wait_ready()["workers"]
    bob = sy.connect("again1", cluster_file=launch.cluster_file)
    dead = sy.connect("dead1", cluster_file=launch.cluster_file)  # connected while it ran
    try:
        x = torch.tensor([1.0, 2.0]).send(bob)
        assert sy.connect("again1", cluster_file=launch.cluster_file) is bob  # a cell re-run
        assert torch.equal(x.get(), torch.tensor([1.0, 2.0]))
        os.kill(workers["dead1"]["pid"], signal.SIGKILL)
        gone = Path(f"/proc/{workers['dead1']['pid']}")
        assert wait_until(lambda: not gone.exists(), 5)  # reaped by its launcher
        started = time.monotonic()
        with pytest.raises(sy.WorkerUnavailableError, match=r"'dead1'.*not running"):
            sy.connect("dead1", cluster_file=launch.cluster_file)
        assert time.monotonic() - started < 2
    finally:
        for handle in (bob, dead):
            sy.local_worker.workers.pop(handle.id, None)
            handle.close()


def test_a_launch_whose_output_pipe_is_closed_stops_its_workers_and_cleans_up(tmp_path):
    """`zsyft launch ... | head -0`: printing the table fails; the workers must not outlive
    the launch, nor its cluster file."""
    cluster_file = tmp_path / "c.json"
    proc = subprocess.Popen(
        [*ZSYFT, "launch", "pipe1", "--cluster-file", str(cluster_file),
         "--log-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    proc.stdout.close()  # nobody reads the table
    assert proc.wait(30) != 0
    assert "stopped all workers" in proc.stderr.read()
    assert not cluster_file.exists()
    assert wait_until(lambda: not zsyft_pids("zsyft-worker pipe1"), 5)


def test_connecting_to_another_worker_of_the_same_name_warns_about_the_objects_left(
    tmp_path, hook
):
    first, second = (tmp_path / "a", tmp_path / "b")
    launches = [Launch(first, "twin1"), Launch(second, "twin1")]
    handles = []
    try:
        for launch in launches:
            launch.wait_ready()
        handles.append(sy.connect("twin1", cluster_file=launches[0].cluster_file))
        x = torch.ones(2).send(handles[0])
        with pytest.warns(UserWarning, match=r"which holds 1 .* they stay at the launched"):
            handles.append(sy.connect("twin1", cluster_file=launches[1].cluster_file))
        y = torch.ones(2).send(handles[1])
        launches[1].stop()  # that worker is gone: so are its objects
        launches[1] = Launch(tmp_path / "c", "twin1")
        launches[1].wait_ready()
        with pytest.warns(UserWarning, match=r"which holds 1 .* they are lost with it"):
            handles.append(sy.connect("twin1", cluster_file=launches[1].cluster_file))
        del x, y
    finally:
        for handle in handles:
            sy.local_worker.workers.pop(handle.id, None)
            handle.close()
        for launch in launches:
            launch.stop()


OTHER_PROGRAM = """
import sys, torch, zsyft as sy
hook = sy.TorchHook(torch)
bob = sy.connect("owner1", cluster_file=sys.argv[1])
kept = torch.tensor([42.0]).send(bob)
print(len(bob._objects), flush=True)
sys.stdin.read()
"""


def test_two_programs_connected_to_the_same_worker_own_their_objects_apart(launched, hook):
    launch = launched("owner1")
    launch.wait_ready()
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_PROGRAM, str(launch.cluster_file)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    bob = sy.connect("owner1", cluster_file=launch.cluster_file)
    try:
        assert other.stdout.readline().strip() == "1"
        mine = torch.tensor([1.0]).send(bob)
        assert list(bob._objects.values()) == [torch.tensor([1.0])]  # not the other's 42
        assert bob.ping()["objects"] == 2  # both are there
        assert repr(bob) == "<Worker id:owner1 #objects:1>"  # only ours: the other's is private
        bob.clear_objects()
        assert bob.ping()["objects"] == 1  # the other program's object stays
        del mine
    finally:
        other.kill()
        other.wait(10)
        sy.local_worker.workers.pop(bob.id, None)
        bob.close()


def test_port_values_are_checked_before_anything_starts():
    assert run("launch", "a", "--port", "-5").returncode == 2
    over = run("launch", "a", "b", "--port", "65535")
    assert over.returncode == 2 and "no room for 2 workers" in over.stderr


def test_restart_brings_a_crashed_worker_back_and_old_pointers_say_their_data_is_lost(
    launched, hook
):
    launch = launched("phoenix", "--restart", "--max-restarts", "2")
    first_pid = launch.wait_ready()["workers"]["phoenix"]["pid"]
    phoenix = sy.connect("phoenix", cluster_file=launch.cluster_file)
    try:
        old = torch.tensor([1.0, 2.0]).send(phoenix)
        phoenix.sync()

        def restarted(count: int) -> bool:
            record = json.loads(launch.cluster_file.read_text())["workers"]["phoenix"]
            return record["restarts"] == count and record["state"] == "up"

        os.kill(first_pid, signal.SIGKILL)
        assert wait_until(lambda: restarted(1), 20)
        assert wait_until(lambda: _answers(phoenix), 10)  # reconnected (same address and key)
        with pytest.raises(sy.ObjectLostError, match="restarted"):
            old.get()  # the same address and key: the handle reconnects, the data is gone
        fresh = torch.tensor([3.0]).send(phoenix)
        assert fresh.get().item() == 3.0
        status = run("status", "--cluster-file", str(launch.cluster_file))
        assert status.stdout.splitlines()[1].split()[3:] == ["up", "0", "1"]

        for count in (2, 3):  # the second restart is the last one allowed
            pid = json.loads(launch.cluster_file.read_text())["workers"]["phoenix"]["pid"]
            os.kill(pid, signal.SIGKILL)
            if count == 2:
                assert wait_until(lambda: restarted(2), 20)
        assert wait_until(
            lambda: json.loads(launch.cluster_file.read_text())["workers"]["phoenix"]["state"]
            == "gave-up", 10,
        )
        status = run("status", "--cluster-file", str(launch.cluster_file))
        assert status.stdout.splitlines()[1].split()[3:] == ["gave-up", "-", "2"]
        assert "gave up on worker phoenix after 2 restart(s)" in _stderr_so_far(launch)
    finally:
        sy.local_worker.workers.pop("phoenix", None)
        phoenix.close()


def _answers(handle) -> bool:
    try:
        return handle.ping(timeout=1)["name"] == handle.id
    except sy.WorkerUnavailableError:  # lost until the link reconnects
        return False


def _stderr_so_far(launch: Launch) -> str:
    launch.proc.send_signal(signal.SIGTERM)
    _, err = launch.proc.communicate(timeout=10)
    return err


def test_name_used_twice_is_refused():
    result = run("launch", "bob", "bob")
    assert result.returncode != 0 and "given twice" in result.stderr


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("launch", "bob", "--port", str(port), "--cluster-file",
                     str(tmp_path / "c.json"), "--log-dir", str(tmp_path))
    assert result.returncode != 0
    assert "bob" in result.stderr and "in use" in result.stderr.lower()


def test_kill_9_of_launch_leaves_no_worker(launched):
    launch = launched("k1", "k2")
    pids = [w["pid"] for w in launch.wait_ready()["workers"].values()]
    launch.proc.kill()
    launch.proc.wait(5)
    assert wait_until(lambda: not (set(pids) & zsyft_pids()), 2)


def test_connect_to_unknown_name_lists_the_launched_ones(launched):
    launch = launched("only")
    launch.wait_ready()
    with pytest.raises(sy.ClusterFileError, match="only"):
        sy.connect("nobody", cluster_file=launch.cluster_file)


def test_status_and_stop_check_their_options_and_name_a_stale_cluster(launched, tmp_path):
    assert run("status", "--timeout", "0").returncode == 2  # usage error
    launch = launched("st1", "st2")
    recorded = launch.wait_ready()
    for worker in recorded["workers"].values():
        os.kill(worker["pid"], signal.SIGKILL)
    launch.proc.kill()  # a launch killed with its workers leaves its cluster file behind
    launch.proc.wait(5)
    status = run("status", "--cluster-file", str(launch.cluster_file), "--timeout", "0.5")
    assert status.returncode == 1
    assert [line.split()[3] for line in status.stdout.splitlines()[1:]] == ["down", "down"]
    stopped = run("stop", "--cluster-file", str(launch.cluster_file))
    assert stopped.returncode == 0 and "stale" in stopped.stdout and "stopped" not in stopped.stdout
    assert not launch.cluster_file.exists()


def test_stop_with_a_stale_cluster_file_signals_no_process_that_reused_a_recorded_pid(
    launched
):
    launch = launched("reuse1")
    recorded = launch.wait_ready()
    launch.proc.kill()  # its worker dies with it; the cluster file stays
    launch.proc.wait(5)
    sleeper = "import time; time.sleep(60)"
    decoys = [subprocess.Popen([sys.executable, "-c", sleeper, marker])
              for marker in ("ipykernel_launcher", "zsyft-worker")]
    try:
        recorded["launcher_pid"] = decoys[0].pid  # the pids came back to other programs
        recorded["workers"]["reuse1"]["pid"] = decoys[1].pid
        launch.cluster_file.write_text(json.dumps(recorded))
        stopped = run("stop", "--cluster-file", str(launch.cluster_file))
        assert stopped.returncode == 0 and "stale" in stopped.stdout
        time.sleep(0.3)
        assert [decoy.poll() for decoy in decoys] == [None, None]
    finally:
        for decoy in decoys:
            decoy.kill()
            decoy.wait(5)


@pytest.mark.parametrize("lease", ["-5", "nan", "inf"])
def test_launch_refuses_a_lease_that_is_not_a_duration(tmp_path, lease):
    launched = run("launch", "never", "--lease", lease, "--cluster-file",
                   str(tmp_path / "c.json"))
    assert launched.returncode == 2 and "--lease" in launched.stderr
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("content, says", [
    ('{"version": 2, "launcher_pid": 1, "key_dir": "/k"}', "has no 'workers' entry"),
    ('[1, 2]', "not what `zsyft launch` writes"),
    ('{"version": 2, "launcher_pid": 1, "key_dir": "/k", "workers": []}', "not what"),
])
def test_a_malformed_cluster_file_is_named_with_what_to_do(tmp_path, content, says):
    path = tmp_path / "bad.json"
    path.write_text(content)
    status = run("status", "--cluster-file", str(path))
    assert status.returncode == 1 and says in status.stderr and "launch" in status.stderr
    with pytest.raises(sy.ClusterFileError, match="launch the cluster again"):
        sy.connect("bob", cluster_file=path)
    with pytest.raises(TypeError, match="needs the names"):
        sy.connect(cluster_file=path)


def test_status_names_a_missing_key_directory_and_creates_nothing(launched):
    launch = launched("kd1")
    recorded = launch.wait_ready()
    moved = Path(recorded["key_dir"] + ".moved")
    Path(recorded["key_dir"]).rename(moved)
    try:
        status = run("status", "--cluster-file", str(launch.cluster_file))
        assert status.returncode == 1 and "key directory" in status.stderr
        assert not Path(recorded["key_dir"]).exists()
    finally:
        moved.rename(recorded["key_dir"])


def test_a_second_launch_on_the_same_cluster_file_is_refused_even_while_the_first_starts(
    launched,
):
    first = launched("one1")
    # Its worker is started (so its claim is held) but still importing torch: no file yet.
    assert wait_until(lambda: len(_launched_by(first.proc.pid)) == 1, 10)
    second = run("launch", "two1", "--cluster-file", str(first.cluster_file))
    assert second.returncode == 1 and "another --cluster-file" in second.stderr
    recorded = first.wait_ready()
    third = run("launch", "three1", "--cluster-file", str(first.cluster_file))
    assert third.returncode == 1 and "one1" in third.stderr
    assert list(json.loads(first.cluster_file.read_text())["workers"]) == ["one1"]
    assert first.proc.poll() is None and recorded["workers"]["one1"]["pid"] in zsyft_pids()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("host, recorded_host", [
    ("0.0.0.0", "127.0.0.1"),
    pytest.param("::1", "[::1]", marks=pytest.mark.skipif(
        not _ipv6_loopback(), reason="no IPv6 loopback on this machine")),
])
def test_other_hosts_record_an_address_clients_can_dial(launched, hook, host, recorded_host):
    launch = launched("h1", "h2", "--host", host)
    workers = launch.wait_ready()["workers"]
    assert all(w["address"].startswith(f"tcp://{recorded_host}:") for w in workers.values())
    h1, h2 = sy.connect("h1", "h2", cluster_file=launch.cluster_file)
    try:
        chained = torch.tensor([1.0, 2.0]).send(h1).send(h2)  # h2 dials h1 at that address
        assert torch.equal((chained * 3).get().get(), torch.tensor([3.0, 6.0]))
    finally:
        for handle in (h1, h2):
            sy.local_worker.workers.pop(handle.id, None)
            handle.close()


def test_worker_that_cannot_start_is_named_with_the_reason(tmp_path):
    # 192.0.2.1 is an address (TEST-NET-1) that no host of ours has: binding it fails
    result = run("launch", "bob", "--host", "192.0.2.1", "--cluster-file",
                 str(tmp_path / "c.json"), "--log-dir", str(tmp_path))
    assert result.returncode != 0
    assert "worker 'bob' failed to start" in result.stderr and "192.0.2.1" in result.stderr
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("host", ["999.1.1.1", "tcp://127.0.0.1", "", "no-such-host.invalid"])
def test_a_host_that_is_no_address_is_refused_before_anything_starts(tmp_path, host):
    result = run("launch", "bob", "--host", host, "--cluster-file", str(tmp_path / "c.json"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is not an address of this host" in result.stderr and "127.0.0.1" in result.stderr
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("variable, value", [
    ("ZSYFT_WORKER_THREADS", "two"), ("ZSYFT_SPIN_US", "fast"), ("ZSYFT_LEASE_S", "long"),
])
def test_a_malformed_setting_in_the_environment_is_named_when_workers_start(
    tmp_path, monkeypatch, variable, value
):
    monkeypatch.setenv(variable, value)
    result = run("launch", "bob", "--cluster-file", str(tmp_path / "c.json"),
                 "--log-dir", str(tmp_path))
    assert result.returncode != 0
    assert "worker 'bob' failed to start" in result.stderr and variable in result.stderr
    assert "Traceback" not in result.stderr


_NOISY_START = """
import os, sys, time
if "zsyft-worker" in sys.argv[0]:
    print("a library says hello on stdout", file=sys.stderr)
    if os.environ["NOISE"] == "print":
        print("hello", flush=True)
    elif os.environ["NOISE"] == "close":
        os.close(1)
        time.sleep(60)
    else:  # a start-up that takes long
        time.sleep(60)
"""


@pytest.mark.parametrize("noise, says", [
    ("print", "it printed 'hello' instead of its readiness line"),
    ("close", "it closed its output after"),
])
def test_a_worker_whose_start_up_writes_to_stdout_is_named_with_its_log(
    tmp_path, monkeypatch, noise, says
):
    """Code that runs in the worker before it is ready (a sitecustomize here) and prints to
    stdout, or closes it: a one-line error naming what happened and the log, no traceback."""
    (tmp_path / "sitecustomize.py").write_text(_NOISY_START)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("NOISE", noise)
    result = run("launch", "bob", "--cluster-file", str(tmp_path / "c.json"),
                 "--log-dir", str(tmp_path))
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "worker 'bob' failed to start" in result.stderr and says in result.stderr
    assert "a library says hello on stdout" in result.stderr  # its log's tail
    assert not (tmp_path / "c.json").exists()


def test_stop_stops_a_launch_that_is_still_starting_its_workers(tmp_path, monkeypatch):
    (tmp_path / "sitecustomize.py").write_text(_NOISY_START)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("NOISE", "slow")
    launch = Launch(tmp_path, "slow1")
    cluster_file = launch.cluster_file
    try:
        assert wait_until(lambda: zsyft_pids("zsyft-worker slow1"), 10)  # it is starting
        stopped = run("stop", "--cluster-file", str(cluster_file))
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped the launch" in stopped.stdout and "still starting" in stopped.stdout
        assert launch.proc.wait(10) != 0
        assert wait_until(lambda: not zsyft_pids("zsyft-worker slow1"), 5)
        assert not cluster_file.exists()
    finally:
        launch.stop()


def test_a_failed_start_shows_only_this_runs_log_lines(tmp_path, monkeypatch):
    args = ("launch", "bob", "--cluster-file", str(tmp_path / "c.json"), "--log-dir",
            str(tmp_path))
    monkeypatch.setenv("ZSYFT_WORKER_THREADS", "first-mistake")
    assert run(*args).returncode != 0
    monkeypatch.setenv("ZSYFT_WORKER_THREADS", "second-mistake")
    second = run(*args)
    assert "second-mistake" in second.stderr
    assert "first-mistake" not in second.stderr  # the log file keeps both runs' lines
    assert "first-mistake" in (tmp_path / "bob.log").read_text()


def test_unusable_directories_and_a_relative_home_are_handled(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = run("launch", "bob", "--cluster-file", str(tmp_path / "c.json"),
              "--log-dir", str(blocker / "logs"))
    assert bad.returncode == 1 and "cannot use" in bad.stderr and "Traceback" not in bad.stderr

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZSYFT_HOME", "relative-home")
    launch = Launch(tmp_path, "rel1")
    try:
        recorded = launch.wait_ready()
        assert Path(recorded["key_dir"]) == tmp_path / "relative-home" / "keys"
    finally:
        launch.stop()


def test_python_dash_m_zsyft_is_the_zsyft_command():
    shown = subprocess.run([sys.executable, "-m", "zsyft", "--version"], capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0 and shown.stdout.startswith("zsyft, version "), shown.stderr
