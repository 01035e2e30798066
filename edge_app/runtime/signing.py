"""Who vouches for a model bundle: Ed25519 keys (through `cryptography`), their files, and signing and checking a
message with them. The bundle decides what is signed (`edge_app.runtime.bundle.signed_message`); the device's
configuration decides which keys it trusts (`[models] trusted_keys`, `edge_app.config.TrustSettings`).

    KEY          the private key, PEM (PKCS #8), readable by its owner only: it stays on the host that packs
    KEY.pub      one line, `digitlite-ed25519 <base64 of the 32-byte public key> <name>`: what devices trust

A key is named on a device by its file, by that line, or by the base64 alone; its id is the first 16 hex digits
of the sha256 of its 32 bytes (what `digitlite models list` and the errors show).

    digitlite models keygen --out release.key --name release
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

ALGORITHM = "ed25519"
PUBLIC_PREFIX = "digitlite-ed25519"  # the first word of a .pub line
PUBLIC_SUFFIX = ".pub"
KEY_BYTES = 32  # an Ed25519 public key


class KeyFileError(ValueError):
    """A key file or a trusted key that cannot be used: missing, not Ed25519, not in digitlite's format."""


@dataclass(frozen=True)
class PublicKey:
    """A public key and the name a device shows for it (the .pub line's name, else its id)."""

    raw: bytes
    name: str = ""

    @property
    def key_id(self) -> str:
        return key_id(self.raw)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.key_id})" if self.name and self.name != self.key_id else self.key_id

    def line(self) -> str:
        """The .pub line of this key."""
        return f"{PUBLIC_PREFIX} {base64.b64encode(self.raw).decode()} {self.name}".rstrip() + "\n"


def key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def public_path(private_path: str | Path) -> Path:
    return Path(f"{private_path}{PUBLIC_SUFFIX}")


def generate(out: str | Path, name: str = "") -> PublicKey:
    """Write a new private key to `out` (mode 0600) and its public line to `out`.pub; refuse to replace either.

    Raises:
        FileExistsError: `out` or `out`.pub exists (a key in use is never overwritten).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from digitdata.atomic import atomic_path, write_synced, write_text

    out = Path(out)
    for path in (out, public_path(out)):
        if path.exists():
            raise FileExistsError(f"{path} exists: a key in use is never overwritten; choose another --out or "
                                  f"remove it first")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    with atomic_path(out) as tmp:
        os.chmod(tmp, 0o600)  # before the key is in it
        write_synced(tmp, pem)
    public = PublicKey(_raw_public(private), name or out.stem)
    write_text(public_path(out), public.line())
    return public


def _raw_public(private) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_private(path: str | Path):
    """The Ed25519 private key in `path` (KeyFileError naming what is wrong and how to make one)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"signing key {path} cannot be read ({exc.strerror}); make one with `digitlite models "
                           f"keygen --out {path}`") from exc
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        hint = " (that is the public key: sign with the file without .pub)" if data.startswith(
            PUBLIC_PREFIX.encode()) else ""
        raise KeyFileError(f"{path} is not an unencrypted PEM private key{hint}; `digitlite models keygen` makes "
                           f"one") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(private).__name__}, not an Ed25519 key; `digitlite models "
                           f"keygen` makes one")
    return private


def sign(private_path: str | Path, message: bytes) -> dict:
    """{"algorithm", "key_id", "signature" (base64)} of `message` signed with the key in `private_path`."""
    private = load_private(private_path)
    return {"algorithm": ALGORITHM, "key_id": key_id(_raw_public(private)),
            "signature": base64.b64encode(private.sign(message)).decode()}


def verify(keys: tuple[PublicKey, ...] | list[PublicKey], signature: dict, message: bytes) -> PublicKey | None:
    """The key among `keys` whose signature `signature` is, over `message`; None if none of them made it."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        if signature.get("algorithm") != ALGORITHM:
            return None
        value = base64.b64decode(signature["signature"], validate=True)
    except (AttributeError, KeyError, TypeError, binascii.Error):
        return None
    for key in keys:
        try:
            Ed25519PublicKey.from_public_bytes(key.raw).verify(value, message)
            return key
        except (InvalidSignature, ValueError):
            continue
    return None


def _inline(text: str) -> bytes | None:
    """The 32 bytes of a bare base64 key, else None."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == KEY_BYTES else None


def parse_public(text: str, where: str) -> PublicKey:
    """A key from a .pub line (`digitlite-ed25519 BASE64 [name]`) or a bare base64 key."""
    words = text.split()
    if len(words) == 1 and (raw := _inline(words[0])):
        return PublicKey(raw, key_id(raw))
    if len(words) >= 2 and words[0] == PUBLIC_PREFIX and (raw := _inline(words[1])):
        return PublicKey(raw, " ".join(words[2:]) or key_id(raw))
    raise KeyFileError(f"{where} is not a digitlite public key: expected one line `{PUBLIC_PREFIX} <base64 of 32 "
                       f"bytes> <name>` (the KEY.pub `digitlite models keygen` writes) or the base64 alone")


def trusted_key(entry: str, base_dir: Path | None = None) -> PublicKey:
    """One entry of `trusted_keys`: a key written out (the .pub line or its base64), else a .pub file (relative
    paths from `base_dir`, the configuration file's folder)."""
    entry = entry.strip()
    if _inline(entry) or entry.startswith(PUBLIC_PREFIX + " "):
        return parse_public(entry, f"trusted key {entry[:24]!r}...")
    path = Path(entry).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise KeyFileError(f"trusted key {path} cannot be read ({exc.strerror}): copy the host's KEY.pub there, or "
                           f"write its line (or its base64) in trusted_keys instead of a path") from exc
    return parse_public(text, str(path))
