"""CURVE key pairs and the key directory that says who may connect.

Every TCP or ipc socket zsyft opens is encrypted and authenticated with CURVE. Keys live in
one directory per user, `$ZSYFT_HOME/keys` (mode 0700), much like `~/.ssh`:

- `NAME.key` holds a Z85 public key; every `*.key` file in the directory is an authorized
  client of the workers that use the directory (copy another host's `client.key` here to let
  it in);
- `NAME.key_secret` (mode 0600) holds the matching Z85 secret key; it never appears in argv,
  logs or messages.

`client` is the user's own identity as a client (private workers of a Python process and the
CLI use it). A program attached to launched workers with `sy.connect` gets a pair of its own,
`c<PID>-<random>` (`session_pair`), so its objects are its alone. Each worker has its own
pair, named `w<PID>-<worker>-<random>` after the process that spawned it, so pairs left behind by a
killed spawner can be swept. A worker dials its peers with its own pair, so workers of one
user accept each other (pointer chains, secure protocols).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq

from zsyft.errors import KeyFileError
from zsyft.transport.at_exit import at_exit

CLIENT = "client"
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
_Z85_KEY = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair as 40-character Z85 strings; `repr` never shows the secret."""

    public: str
    secret: str

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public!r})"


def zsyft_home() -> Path:
    """`$ZSYFT_HOME`, or `~/.zsyft`: where the cluster file, logs and keys live."""
    # absolute: the cluster file records paths that clients in other directories read
    return Path(os.environ.get("ZSYFT_HOME") or Path.home() / ".zsyft").absolute()


def default_key_dir() -> Path:
    return zsyft_home() / "keys"


def is_public_key(value: object) -> bool:
    """True for a 40-character Z85 string (the form keys take in files and messages)."""
    return isinstance(value, str) and _Z85_KEY.match(value) is not None


def private_dir(path: Path) -> Path:
    """Create `path` with mode 0700 (or check an existing one is not open to others)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key directory {path} is readable by other users (mode {mode:o}); "
            f"run `chmod 700 {path}`"
        )
    return path


def generate() -> KeyPair:
    public, secret = zmq.curve_keypair()
    return KeyPair(public.decode(), secret.decode())


def write_pair(directory: Path, stem: str) -> KeyPair:
    """Create a fresh pair as `stem.key` and `stem.key_secret` (0600, never overwritten)."""
    pair = generate()
    private_dir(directory)
    secret_path = directory / (stem + SECRET_SUFFIX)
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(pair.secret + "\n")
    public_tmp = directory / f".{stem}.{secrets.token_hex(4)}.tmp"
    public_tmp.write_text(pair.public + "\n")
    os.replace(public_tmp, directory / (stem + PUBLIC_SUFFIX))
    return pair


def read_pair(secret_path: Path) -> KeyPair:
    """The pair whose secret is stored at `secret_path` (the public key is derived)."""
    try:
        mode = stat.S_IMODE(secret_path.stat().st_mode)
        text = secret_path.read_text().strip()
    except OSError as exc:
        raise KeyFileError(f"cannot read the secret key file {secret_path}: {exc}") from None
    if mode & 0o077:
        raise KeyFileError(
            f"secret key file {secret_path} is readable by other users (mode {mode:o}); "
            f"run `chmod 600 {secret_path}`"
        )
    if not is_public_key(text):
        raise KeyFileError(f"{secret_path} does not hold a Z85 CURVE secret key")
    return KeyPair(zmq.curve_public(text.encode()).decode(), text)


def remove_pair(directory: Path, stem: str) -> None:
    for suffix in (PUBLIC_SUFFIX, SECRET_SUFFIX):
        (directory / (stem + suffix)).unlink(missing_ok=True)


def client_pair(directory: Path | None = None) -> KeyPair:
    """The user's client identity in `directory` (created on first use)."""
    directory = directory or default_key_dir()
    secret_path = directory / (CLIENT + SECRET_SUFFIX)
    try:
        return read_pair(secret_path)
    except KeyFileError:
        if secret_path.exists():
            raise
    try:
        return write_pair(directory, CLIENT)
    except FileExistsError:  # another process created it meanwhile
        return read_pair(secret_path)


_session_pairs: dict[Path, KeyPair] = {}


def session_pair(directory: Path) -> KeyPair:
    """A client identity of this process alone, in `directory` (written on first use, removed
    when the process exits; pairs left by a `kill -9` are swept at the next use). Objects
    belong to the key that created them, so two programs attached to the same launched
    workers are two owners: neither sees, uses or clears the other's objects."""
    found = _session_pairs.get(directory)
    if found is None:
        sweep_stale_pairs(directory)
        stem = f"c{os.getpid()}-{secrets.token_hex(4)}"
        found = _session_pairs[directory] = write_pair(directory, stem)
        at_exit(remove_pair, directory, stem)
    return found


def authorized_keys(directory: Path, pattern: str = "*") -> frozenset[str]:
    """Every public key in `directory`'s `*.key` files (malformed files are skipped).

    `pattern="w*"` gives the worker keys: workers may act on behalf of a client (forwarding
    along pointer chains); to trust a worker on another host, name its public key file
    `w0-NAME.key`."""
    keys = set()
    try:
        paths = list(directory.glob(pattern + PUBLIC_SUFFIX))
    except OSError:
        return frozenset()
    for path in paths:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if is_public_key(text):
            keys.add(text)
    return frozenset(keys)


def sweep_stale_pairs(directory: Path) -> None:
    """Remove worker pairs whose spawning process is gone, and client session pairs whose
    process is gone (both left by a `kill -9`)."""
    try:
        paths = [*directory.glob("w*-*" + SECRET_SUFFIX), *directory.glob("c*-*" + SECRET_SUFFIX)]
    except OSError:
        return
    for path in paths:
        stem = path.name[: -len(SECRET_SUFFIX)]
        pid_text = stem[1:].split("-", 1)[0]
        if pid_text.isdigit() and not pid_alive(int(pid_text)):
            remove_pair(directory, stem)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (files named after a process that is gone are stale)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_identity: KeyPair | None = None


def set_identity(pair: KeyPair) -> None:
    """Make `pair` this process's identity when it dials workers (a worker's own pair)."""
    global _identity
    _identity = pair


def identity() -> KeyPair:
    """This process's client identity: a worker's own pair, else the user's client pair."""
    global _identity
    if _identity is None:
        _identity = client_pair()
    return _identity
