"""Build hostile store files the way an attacker would: from docs/format.md, not from mstore's own encoders.

A remote or a store directory is just files; anyone who can write there can put anything in them. These
helpers write envelopes, manifests, metadata and refs byte by byte, and run the real `mstore` command in a
subprocess with a time limit, so a hang is a test failure instead of a stuck suite.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import blake3
import msgpack
import zstandard

MAGIC = b"MSZ\x01"
ZSTD, GROUPED, XOR_DELTA = 1, 2, 3
TIMEOUT = 60  # seconds for one command: a hang fails the test instead of stopping the suite


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def envelope(
    codec: int, size: int, payload: bytes, *, width: int = 1, base: str | None = None, depth: int = 0
) -> bytes:
    """`MSZ\\x01 | codec | width | size u64le | check 8B | [base 32B | depth u8] | payload` (format.md)."""
    head = MAGIC + struct.pack("<BBQ", codec, width, size)
    prefix = bytes.fromhex(base) + bytes([depth]) if base is not None else b""
    check = blake3.blake3(head + prefix + payload).digest()[:8]
    return head + check + prefix + payload


def xor_delta(content: bytes, base_content: bytes, base: str, depth: int = 1) -> bytes:
    """An XOR-delta envelope (width 1: the grouping is the identity) of `content` against `base_content`."""
    diff = bytes(a ^ b for a, b in zip(content, base_content, strict=True))
    return envelope(XOR_DELTA, len(content), zstandard.ZstdCompressor().compress(diff), base=base, depth=depth)


def put_object(store: Path, oid: str, stored: bytes) -> Path:
    path = store / "objects" / oid[:2] / oid[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.chmod(path, 0o644)
        path.unlink()
    path.write_bytes(stored)
    return path


def file_manifest(name: str, content_hash: str, size: int, chunks: list[tuple[str, int]]) -> bytes:
    doc = {
        "mstore": "manifest",
        "v": 1,
        "kind": "file",
        "entries": [
            {
                "path": name,
                "type": "f",
                "size": size,
                "exec": False,
                "b3": bytes.fromhex(content_hash),
                "chunks": [[bytes.fromhex(oid), n] for oid, n in chunks],
            }
        ],
    }
    return msgpack.packb(doc, use_bin_type=True)


def write_version(store: Path, vid: str, meta: dict[str, object] | bytes) -> None:
    """`version_<ID>/metadata.json` and a matching `metadata.b3`, as anyone with write access can."""
    data = meta if isinstance(meta, bytes) else (json.dumps(meta, indent=2) + "\n").encode()
    directory = store / f"version_{vid}"
    directory.mkdir(exist_ok=True)
    for name in ("metadata.json", "metadata.b3"):
        if (directory / name).exists():
            os.chmod(directory / name, 0o644)
    (directory / "metadata.json").write_bytes(data)
    (directory / "metadata.b3").write_bytes(f"{b3(data)}  metadata.json\n".encode())


def read_meta(store: Path, vid: str) -> dict[str, object]:
    meta: dict[str, object] = json.loads((store / f"version_{vid}" / "metadata.json").read_bytes())
    return meta


def config_bytes(config: dict[str, object]) -> bytes:
    """mstore.json with a checksum that matches (`b3`: blake3 of the other fields as canonical JSON, format.md);
    a checksum proves no damage, not authorship, so an attacker recomputes it."""
    settings = {k: v for k, v in config.items() if k != "b3"}
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps({**settings, "b3": b3(canonical)}, indent=2).encode()


def ref_bytes(vid: str) -> bytes:
    line = f"{vid}\n"
    return f"{line}b3 {b3(line.encode())}\n".encode()


def add_crafted_file_version(store: Path, vid: str, name: str, content: bytes, chunk_oid: str) -> None:
    """A one-file version whose single chunk is `chunk_oid` (whatever is stored there)."""
    manifest = file_manifest(name, b3(content), len(content), [(chunk_oid, len(content))])
    moid = b3(manifest)
    put_object(store, moid, manifest)
    meta = {
        "timestamp": vid,
        "model_hash": b3(content),
        "original_path": f"/models/{name}",
        "mstore": {"format": 2, "manifest": moid, "kind": "file", "size": len(content), "files": 1},
    }
    write_version(store, vid, meta)
    (store / "refs" / "latest").unlink(missing_ok=True)
    (store / "refs" / "latest").write_bytes(ref_bytes(vid))


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def one_line_error(self) -> bool:
        """Exit 1 or 2 with one `mstore: error:` line (other stderr lines only warnings) and no traceback."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("mstore: error:")]
        others = [line for line in lines if not line.startswith(("mstore: error:", "warning:"))]
        return self.code in (1, 2) and "Traceback" not in self.stderr and len(errors) == 1 and not others


def mstore(*args: str | Path, cwd: Path, store: Path | None = None, timeout: float = TIMEOUT) -> Run:
    """Run the real command line in a fresh process; raises subprocess.TimeoutExpired on a hang."""
    env = {k: v for k, v in os.environ.items() if k not in ("MSTORE_DIR", "MSTORE_DEBUG")}
    prefix = ["--store", str(store)] if store is not None else []
    done = subprocess.run(
        [sys.executable, "-m", "mstore", *prefix, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def snapshot(root: Path) -> dict[str, tuple[int, float]]:
    """Every path under `root` (without following links) with its size and mtime: to prove nothing changed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime)
    return out


def replace_file(path: Path, how: str) -> None:
    """Put something hostile where a store file was: `fifo` (a read blocks forever), `zero` (a link to
    /dev/zero, endless) or `huge` (a sparse regular file larger than anything mstore writes there)."""
    if path.exists() or path.is_symlink():
        if not path.is_symlink():
            os.chmod(path, 0o644)  # objects are read-only
        path.unlink()
    if how == "fifo":
        os.mkfifo(path)
    elif how == "zero":
        os.symlink("/dev/zero", path)
    elif how == "huge":
        with open(path, "wb") as f:
            f.truncate(300 << 20)
    else:
        raise ValueError(how)
