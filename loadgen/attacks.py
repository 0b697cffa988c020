"""Attack injectors as data: cryptojacking (proof-of-work burner) and ransomware (file encryptor).

The work itself runs as a child process of the attacked service (`python -m loadgen.attacks ...`),
so that a process-tree resource measurement sees it as the service's own usage.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from estimator.errors import InputError
from loadgen import children

KINDS = ("crypto", "ransomware")
SLICE_S = 0.05


MAX_INTENSITY = 16.0
"""The most busy cores one attack may take (a worker process each): a testbed is one machine."""


@dataclass(frozen=True)
class Attack:
    """One attack: what, on which service, from start_s for duration_s (real seconds)."""

    kind: str
    target: str
    start_s: float
    duration_s: float
    intensity: float = 1.0

    def __post_init__(self) -> None:
        """Reject attacks that cannot run."""
        if self.kind not in KINDS:
            raise InputError(f"unknown attack {self.kind!r}; expected one of {KINDS}", field="kind")
        for name in ("start_s", "duration_s", "intensity"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (name != "start_s" and value == 0):
                raise InputError("must be a finite number > 0 (start_s >= 0)", field=name)
        if self.intensity > MAX_INTENSITY:
            raise InputError(
                f"at most {MAX_INTENSITY:g} (busy cores: a worker process each), got "
                f"{self.intensity:g}",
                field="intensity",
            )

    @property
    def end_s(self) -> float:
        """When the attack stops."""
        return self.start_s + self.duration_s


def schedule_from_dicts(
    items: Iterable[Mapping[str, Any]], source: str = "attacks"
) -> tuple[Attack, ...]:
    """Attacks from plain dicts (YAML/JSON), sorted by start; errors name the item."""
    attacks = []
    for i, item in enumerate(items):
        try:
            attacks.append(Attack(**dict(item)))
        except TypeError as exc:
            raise InputError(f"bad attack fields: {exc}", source=source, field=f"[{i}]") from exc
        except InputError as exc:
            raise InputError(exc.bare_message, source=source, field=f"[{i}].{exc.field}") from exc
    return tuple(sorted(attacks, key=lambda a: a.start_s))


@dataclass
class AttackRunner:
    """Fires each scheduled attack once when elapsed time reaches its start (no clock inside)."""

    attacks: tuple[Attack, ...]
    trigger: Callable[[Attack], object]
    fired: list[Attack] = field(default_factory=list)

    def step(self, elapsed: float) -> list[Attack]:
        """Trigger every attack whose start has come and was not yet fired; returns them."""
        due = [a for a in self.attacks if a.start_s <= elapsed and a not in self.fired]
        for attack in due:
            self.trigger(attack)
            self.fired.append(attack)
        return due

    def active(self, elapsed: float) -> list[Attack]:
        """Attacks running at `elapsed`."""
        return [a for a in self.attacks if a.start_s <= elapsed < a.end_s]


def proof_of_work(seconds: float, duty: float = 1.0, difficulty_bits: int = 22) -> int:
    """Search sha256 nonces for `seconds`, busy `duty` of each slice; returns hashes tried."""
    target = 1 << (256 - difficulty_bits)
    header, nonce, hashes = os.urandom(32), 0, 0
    deadline = time.monotonic() + seconds
    while (now := time.monotonic()) < deadline:
        busy_until = now + SLICE_S * duty
        while time.monotonic() < busy_until:
            for _ in range(2000):
                digest = hashlib.sha256(header + nonce.to_bytes(8, "little")).digest()
                if int.from_bytes(digest, "big") < target:
                    header = digest
                nonce += 1
            hashes += 2000
        if duty < 1.0:
            time.sleep(max(0.0, min(SLICE_S * (1 - duty), deadline - time.monotonic())))
    return hashes


def keystream(key: bytes, n: int) -> bytes:
    """n bytes of sha256 counter-mode keystream."""
    blocks = (hashlib.sha256(key + i.to_bytes(8, "little")).digest() for i in range((n + 31) // 32))
    return b"".join(blocks)[:n]


def xor_encrypt(data: bytes, key: bytes) -> bytes:
    """XOR with the keystream; applying it twice gives the data back."""
    if not data:
        return data
    stream = keystream(key, len(data))
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        len(data), "little"
    )


def encrypt_tree(root: Path, seconds: float, key: bytes, duty: float = 1.0) -> tuple[int, int]:
    """Read, encrypt and rewrite (fsync-ed) every file under root, pass after pass, for `seconds`."""
    deadline, files, written, rounds = time.monotonic() + seconds, 0, 0, 0
    while time.monotonic() < deadline:
        rounds += 1  # a fresh key per pass, so a second pass never decrypts the first
        pass_key = hashlib.sha256(key + rounds.to_bytes(8, "little")).digest()
        paths = [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".enc-tmp")]
        if not paths:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        for path in paths:
            if time.monotonic() >= deadline:
                break
            started = time.monotonic()
            try:
                data = path.read_bytes()
                tmp = path.with_name(path.name + ".enc-tmp")
                with open(tmp, "wb") as handle:
                    handle.write(xor_encrypt(data, pass_key))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except FileNotFoundError:
                continue
            files, written = files + 1, written + len(data)
            if duty < 1.0:
                time.sleep((time.monotonic() - started) * (1 - duty) / duty)
    return files, written


def spawn(attack: Attack, data_dir: Path | None) -> list[subprocess.Popen[bytes]]:
    """Start the attack's worker processes as children of the calling process."""
    base = [
        sys.executable,
        "-m",
        "loadgen.attacks",
        attack.kind,
        "--seconds",
        str(attack.duration_s),
        "--parent",
        str(os.getpid()),
    ]
    if attack.kind == "ransomware":
        if data_dir is None:
            raise InputError("ransomware needs a service with a data directory", field="target")
        cmd = [*base, "--dir", str(data_dir), "--duty", str(min(1.0, attack.intensity))]
        return [subprocess.Popen(cmd)]
    workers = max(1, math.ceil(attack.intensity))
    duty = attack.intensity / workers
    return [subprocess.Popen([*base, "--duty", str(duty)]) for _ in range(workers)]


def main(argv: list[str] | None = None) -> int:
    """Worker entry point: `python -m loadgen.attacks crypto|ransomware --seconds S ...`."""
    parser = argparse.ArgumentParser(prog="python -m loadgen.attacks")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--duty", type=float, default=1.0)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--parent", type=int, default=None, help="end when this pid is gone")
    args = parser.parse_args(argv)
    if args.parent is not None:
        # spawn() runs in a request's thread, which ends long before the attack: the kernel's
        # parent-death signal is bound to that thread, so the worker watches its parent itself
        children.exit_with_parent(args.parent)
    duty = min(1.0, max(0.01, args.duty))
    if args.kind == "crypto":
        proof_of_work(args.seconds, duty)
    else:
        if args.dir is None:
            parser.error("ransomware needs --dir")
        encrypt_tree(args.dir, args.seconds, os.urandom(32), duty)
    return 0


if __name__ == "__main__":
    sys.exit(main())
