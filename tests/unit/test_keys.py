"""Key files: private modes, derived public keys, the authorized set, sweeping stale pairs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from zsyft.errors import KeyFileError
from zsyft.transport import keys


def test_pair_files_are_private_and_the_public_key_is_derived(tmp_path):
    directory = tmp_path / "keys"
    pair = keys.write_pair(directory, "bob")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "bob.key_secret").stat().st_mode) == 0o600
    assert keys.read_pair(directory / "bob.key_secret") == pair
    assert (directory / "bob.key").read_text().strip() == pair.public
    assert pair.secret not in repr(pair)
    with pytest.raises(FileExistsError):
        keys.write_pair(directory, "bob")  # never overwritten


def test_secret_readable_by_others_or_garbage_is_refused(tmp_path):
    directory = tmp_path / "keys"
    keys.write_pair(directory, "bob")
    secret = directory / "bob.key_secret"
    secret.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        keys.read_pair(secret)
    secret.chmod(0o600)
    secret.write_text("not a key")
    with pytest.raises(KeyFileError, match="Z85"):
        keys.read_pair(secret)
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    with pytest.raises(KeyFileError, match="chmod 700"):
        keys.private_dir(open_dir)


def test_authorized_keys_are_the_public_key_files(tmp_path):
    a = keys.write_pair(tmp_path, "a")
    b = keys.write_pair(tmp_path, "b")
    (tmp_path / "junk.key").write_text("too short")
    assert keys.authorized_keys(tmp_path) == {a.public, b.public}
    keys.remove_pair(tmp_path, "a")
    assert keys.authorized_keys(tmp_path) == {b.public}


def test_client_pair_is_created_once(tmp_path):
    first = keys.client_pair(tmp_path)
    assert keys.client_pair(tmp_path) == first


def test_pairs_of_dead_spawners_are_swept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    keys.write_pair(tmp_path, f"w{dead_pid}-bob-1234")
    alive = f"w{os.getpid()}-alice-5678"
    keys.write_pair(tmp_path, alive)
    keys.write_pair(tmp_path, "client")
    keys.sweep_stale_pairs(tmp_path)
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {alive + ".key", alive + ".key_secret", "client.key", "client.key_secret"}
