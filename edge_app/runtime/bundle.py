"""Model bundles: the reader's three models, their manifest entries and gate figures, as one file with a sha256.

A bundle is an uncompressed tar (`.tflite` files hardly compress) holding `bundle.json`, `manifest.json`, the
model files, `signature.json` when it is signed and, optionally, golden images with their labels (`golden.csv`
and `golden-<name>` files: the canary reads them with the new models and the ones in use), nothing else: no
folders, links, devices or sparse files. `bundle.json` says the version, when it was made (`created`, what
"newer" means to a fleet), which file plays which role (`model`: the MNIST classifier, `regions`: the region
finder, `recognizer`: the number recognizer), each model file's sha256 and size, every other member's sha256
(`members`), and each model's gate figures copied from its manifest entry. The bundle file's own sha256 is
written beside it (`NAME.sha256`, the `sha256sum` format), so a device can check what it downloaded before it
opens it.

**Signed bundles.** `signature.json` is an Ed25519 signature (`edge_app.runtime.signing`) of `bundle.json` in a
canonical form (`signed_message`: sorted keys, no spaces, UTF-8), so it covers the version, the creation time,
the gate figures and, through their sha256, every file. A device takes a bundle only when one of the keys its
configuration trusts made that signature (`Trust`, `check_signer`), unless it allows unsigned bundles (a lab).

`pack_release` makes one from a release folder (`digitlite models pack`, `digitlite convert --bundle`, `--sign
KEY`); `open_bundle` checks one (bytes, members, names, declared sizes, every sha256, the TFLite header) without
writing anything; the device's store (`edge_app.store.models`) checks its signer and unpacks what it returns.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge_app.config import BUNDLE_LIMITS, GOLDEN_MAX_IMAGES, BundleLimits, TrustSettings
from edge_app.runtime import signing
from edge_app.runtime.integrity import (
    DEFAULT_MODEL_NAME,
    DEFAULT_RECOGNIZER_NAME,
    DEFAULT_REGIONS_NAME,
    MANIFEST_NAME,
    ModelError,
)

log = logging.getLogger(__name__)

SCHEMA = 2  # 2: `members` lists every file's sha256, so that a signature of bundle.json covers them all
BUNDLE_JSON = "bundle.json"
SIGNATURE_JSON = "signature.json"  # {"algorithm": "ed25519", "key_id", "signature"} of `signed_message(info)`
SIGNED_DOMAIN = b"digitlite model bundle\n"  # prefixed to what is signed: this signature means nothing elsewhere
STORE_KEYS = ("bundle_sha256",)  # what a device's store adds to bundle.json when it installs one (not signed)
GOLDEN_CSV = "golden.csv"  # file,text of the golden images, named golden-<file> in the bundle
GOLDEN_PREFIX = "golden-"
ROLES = {"model": DEFAULT_MODEL_NAME, "regions": DEFAULT_REGIONS_NAME, "recognizer": DEFAULT_RECOGNIZER_NAME}
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a folder name on any file system, no "..", no "/"
MEMBER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# What each role's manifest entry says about its accuracy: the figures the gate checked, copied into bundle.json.
GATE_KEYS = ("accuracy", "figures", "gate", "vs_float32", "keras_agreement")


class BundleError(ModelError):
    """A bundle that is not what it says: wrong sha256, a member that is not a plain model file, too large."""


@dataclass(frozen=True)
class Bundle:
    """A checked bundle, in memory: its description and its files' bytes (by member name)."""

    sha256: str  # of the bundle file
    info: dict  # bundle.json
    files: dict[str, bytes]  # every member but bundle.json, manifest.json and signature.json included

    @property
    def version(self) -> str:
        return self.info["version"]

    @property
    def signature(self) -> dict | None:
        """signature.json (None: the bundle is not signed)."""
        return parse_signature(self.files.get(SIGNATURE_JSON))

    def golden(self) -> list[tuple[str, bytes, str]]:
        """(name, image bytes, label) of the golden images the bundle carries ([] when none)."""
        return golden_of(self.files)


def golden_of(files: dict[str, bytes]) -> list[tuple[str, bytes, str]]:
    """The golden images among a bundle's members (see `Bundle.golden`)."""
    if GOLDEN_CSV not in files:
        return []
    rows = list(csv.reader(io.StringIO(files[GOLDEN_CSV].decode("utf-8", errors="replace"))))
    return [(name, files[GOLDEN_PREFIX + name], text) for name, text in rows[1:]
            if GOLDEN_PREFIX + name in files]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sidecar(path: str | Path) -> Path:
    """Where a bundle's sha256 is written: `NAME.sha256` beside it."""
    return Path(f"{path}.sha256")


def default_version(files: dict[str, bytes]) -> str:
    """A version no two different bundles share: the UTC time and the first digits of the files' joint sha256."""
    joint = sha256_bytes(b"".join(sha256_bytes(files[name]).encode() for name in sorted(files)))
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{joint[:8]}"


def check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION.fullmatch(version) or ".." in version:
        raise BundleError(f"bundle version {version!r} is not valid: use 1 to 64 letters, digits, '.', '_' or '-', "
                          f"starting with a letter or digit")
    return version


def signed_message(info: dict) -> bytes:
    """What a bundle's signature covers: its bundle.json (without what a store added), in one canonical form."""
    unsigned = {key: value for key, value in info.items() if key not in STORE_KEYS}
    return SIGNED_DOMAIN + json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_signature(data: bytes | None) -> dict | None:
    """signature.json's content (None when there is none; BundleError when it is not a signature)."""
    if data is None:
        return None
    try:
        signature = json.loads(data)
        if isinstance(signature, dict) and isinstance(signature.get("key_id"), str):
            return signature
    except ValueError:
        pass
    raise BundleError(f"the bundle's {SIGNATURE_JSON} is not a signature: pack it again with --sign KEY")


def pack_release(release: str | Path, out: str | Path, version: str | None = None, golden: str | Path | None = None,
                 limits: BundleLimits = BUNDLE_LIMITS, sign: str | Path | None = None) -> Bundle:
    """Write the bundle of the int8 models in `release` (a folder `digitlite convert` released into) to `out`,
    and its sha256 beside it; both atomically.

    Args:
        golden: a folder of labelled images (`truth.csv` or `labels.csv`: file,text) the bundle carries for the
            device's canary; at most GOLDEN_MAX_IMAGES.
        sign: the private key (`digitlite models keygen`) that signs bundle.json; None: an unsigned bundle, which
            devices refuse unless their configuration allows unsigned bundles.

    Raises:
        BundleError: a role's model or its manifest entry is missing, the golden folder is not usable, or the
            version is not valid.
        signing.KeyFileError: the key cannot be used.
    """
    from digitdata.atomic import write_bytes, write_text

    release = Path(release)
    manifest_path = release / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{release} has no {MANIFEST_NAME}: pack a folder that `digitlite convert` released into")
    try:
        entries = json.loads(manifest_path.read_text())["models"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BundleError(f"{manifest_path}: not a digitlite manifest ({exc})") from exc
    files, described, gates = {}, {}, {}
    for role, name in ROLES.items():
        path, entry = release / name, entries.get(name)
        if not path.is_file() or not entry:
            raise BundleError(f"{release} has no released {name} (the {role}): convert it there first, with "
                              f"`digitlite convert ... --out {release}`")
        files[name] = path.read_bytes()
        if entry.get("sha256") != sha256_bytes(files[name]):
            raise BundleError(f"{path} differs from its manifest entry: it is not the released file")
        gates[role] = {key: entry[key] for key in GATE_KEYS if key in entry}
        described[name] = {"role": role, "sha256": entry["sha256"], "bytes": len(files[name])}
    files[MANIFEST_NAME] = json.dumps({"schema": 1, "models": {n: entries[n] for n in ROLES.values()}},
                                      indent=2).encode()
    if golden is not None:
        files.update(_golden_members(Path(golden)))
    info = {"schema": SCHEMA, "version": check_version(version or default_version(files)),
            "created": datetime.now(UTC).isoformat(timespec="microseconds"),
            "roles": dict(ROLES), "files": described, "gate": gates,
            "members": {name: sha256_bytes(content) for name, content in files.items()}}
    if sign is not None:
        files[SIGNATURE_JSON] = json.dumps(signing.sign(sign, signed_message(info)), indent=2).encode()
    data = _tar({BUNDLE_JSON: json.dumps(info, indent=2).encode(), **files})
    if len(data) > limits.max_bytes:
        raise BundleError(f"the bundle would be {len(data):,} bytes, more than a device takes ({limits.max_bytes:,})")
    write_bytes(out, data)
    digest = sha256_bytes(data)
    write_text(sidecar(out), f"{digest}  {Path(out).name}\n")
    return Bundle(digest, info, files)


def _golden_members(folder: Path) -> dict[str, bytes]:
    labels = next((folder / n for n in ("truth.csv", "labels.csv") if (folder / n).is_file()), None)
    if labels is None:
        raise BundleError(f"--golden {folder}: no truth.csv or labels.csv (file,text) there")
    with open(labels, newline="") as f:
        rows = [(r[0], r[1]) for r in list(csv.reader(f))[1:] if len(r) >= 2]
    rows = [(name, text) for name, text in rows if MEMBER.fullmatch(GOLDEN_PREFIX + name) and (folder / name).is_file()]
    if not rows or len(rows) > GOLDEN_MAX_IMAGES:
        raise BundleError(f"--golden {folder}: {len(rows)} usable images (plain names, listed in {labels.name}); "
                          f"give 1 to {GOLDEN_MAX_IMAGES}")
    table = io.StringIO()
    csv.writer(table, lineterminator="\n").writerows([("file", "text"), *rows])
    return {GOLDEN_CSV: table.getvalue().encode(), **{GOLDEN_PREFIX + n: (folder / n).read_bytes() for n, _ in rows}}


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            member = tarfile.TarInfo(name)
            member.size, member.mode, member.mtime = len(data), 0o644, 0
            tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def parse_sidecar(text: str, where: str) -> str:
    """The sha256 at the start of a sidecar's text (`sha256sum`'s format); BundleError naming `where` if none."""
    words = text.split()
    if not words or not re.fullmatch(r"[0-9a-fA-F]{64}", words[0]):
        raise BundleError(f"{where} does not hold a sha256; pass --sha256 with the bundle's sha256 (the host "
                          f"printed it)")
    return words[0].lower()


def read_sidecar(path: str | Path) -> str:
    """The sha256 written beside a bundle (BundleError when there is none or it is not one)."""
    side = sidecar(path)
    try:
        text = side.read_text()
    except OSError as exc:
        raise BundleError(f"no sha256 for {path}: {side} is missing; pass --sha256 with the bundle's sha256 (the "
                          f"host printed it)") from exc
    return parse_sidecar(text, str(side))


def open_bundle(data: bytes, sha256: str, limits: BundleLimits = BUNDLE_LIMITS) -> Bundle:
    """Check a bundle's bytes against the sha256 it was announced with, then every member, in memory.

    Raises:
        BundleError: naming what is wrong; nothing is written.
    """
    if len(data) > limits.max_bytes:
        raise BundleError(f"the bundle is {len(data):,} bytes, more than {limits.max_bytes:,}")
    digest = sha256_bytes(data)
    if digest != sha256.lower():
        raise BundleError(f"the bundle's sha256 is {digest[:12]}..., not the {sha256[:12]}... it was announced "
                          f"with: the file is corrupt, truncated or another one")
    members = _untar(data, limits)
    try:
        info = json.loads(members.pop(BUNDLE_JSON))
        if info.get("schema") != SCHEMA:
            raise BundleError(f"bundle schema {info.get('schema')!r}; this digitlite reads schema {SCHEMA}: pack "
                              f"it again with this digitlite (`digitlite models pack ... --sign KEY`)")
        manifest = json.loads(members[MANIFEST_NAME])["models"]
        described, roles, listed = info["files"], info["roles"], info["members"]
        check_version(info["version"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"not a digitlite bundle: {BUNDLE_JSON} or {MANIFEST_NAME} is missing or malformed "
                          f"({exc!r})") from exc
    if sorted(roles) != sorted(ROLES) or set(roles.values()) != set(described):
        raise BundleError(f"the bundle's roles {sorted(roles)} are not {sorted(ROLES)}, one file each")
    extra = {n for n in members if n in (GOLDEN_CSV, SIGNATURE_JSON) or n.startswith(GOLDEN_PREFIX)}
    if set(members) - extra != {*described, MANIFEST_NAME}:
        raise BundleError(f"the bundle holds {sorted(members)}; {BUNDLE_JSON} describes {sorted(described)}")
    held = {name: sha256_bytes(content) for name, content in members.items() if name != SIGNATURE_JSON}
    listed = listed if isinstance(listed, dict) else {}
    if listed != held:
        odd = sorted(set(held).symmetric_difference(listed) | {n for n in held if listed.get(n) != held[n]})
        raise BundleError(f"the bundle's files {odd} differ from the sha256 its {BUNDLE_JSON} lists for them")
    parse_signature(members.get(SIGNATURE_JSON))
    for name, meta in described.items():
        content = members[name]
        if content[4:8] != b"TFL3":
            raise BundleError(f"{name} in the bundle is not a TFLite model")
        if sha256_bytes(content) != meta.get("sha256") or manifest.get(name, {}).get("sha256") != meta["sha256"]:
            raise BundleError(f"{name} in the bundle differs from the sha256 its {BUNDLE_JSON} and "
                              f"{MANIFEST_NAME} record")
    return Bundle(digest, info, members)


def _untar(data: bytes, limits: BundleLimits) -> dict[str, bytes]:
    """Every member's bytes, once every header was checked: names, kinds and the sizes they declare."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            return {member.name: _read(tar, member) for member in _checked_members(tar, limits)}
    except (tarfile.TarError, EOFError) as exc:
        raise BundleError(f"not a bundle: the file is not a complete tar archive ({exc})") from exc


def _checked_members(tar: tarfile.TarFile, limits: BundleLimits) -> list[tarfile.TarInfo]:
    """The members' headers, read without reading a member: a plain file each, sizes within the limits. A sparse
    member's size is the size it unpacks to (a few KB in the archive may declare gigabytes): refused."""
    members, names, total = [], set(), 0
    for count, member in enumerate(tar, start=1):
        if count > limits.max_files:
            raise BundleError(f"the bundle holds more than {limits.max_files} files")
        if not member.isreg() or member.issparse() or not MEMBER.fullmatch(member.name) or member.name in names:
            raise BundleError(f"the bundle holds {member.name!r}, which is not a plain file name (folders, "
                              f"links, sparse files, paths and repeated names are refused)")
        if member.size > limits.max_member_bytes:
            raise BundleError(f"the bundle's {member.name!r} would unpack to {member.size:,} bytes, more than "
                              f"{limits.max_member_bytes:,}")
        total += member.size
        if total > limits.max_unpacked_bytes:
            raise BundleError(f"the bundle's files would unpack to more than {limits.max_unpacked_bytes:,} bytes")
        members.append(member)
        names.add(member.name)
    return members


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    content = tar.extractfile(member).read(member.size + 1)
    if len(content) != member.size:
        raise BundleError(f"the bundle's {member.name!r} holds {len(content):,} bytes, not the {member.size:,} its "
                          f"header says")
    return content


# ---------------------------------------------------------------------------------------------- who signed it


@dataclass(frozen=True)
class Trust:
    """The keys a device takes bundles from, and whether it takes unsigned ones too (a lab)."""

    keys: tuple[signing.PublicKey, ...] = ()
    allow_unsigned: bool = False

    @classmethod
    def of(cls, settings: TrustSettings) -> Trust:
        """The keys `settings` name, read (signing.KeyFileError naming one that cannot be)."""
        return cls(tuple(signing.trusted_key(k, settings.base_dir) for k in settings.trusted_keys),
                   settings.allow_unsigned)


@dataclass(frozen=True)
class Signer:
    """Who signed a bundle, as this device sees it."""

    trusted: bool  # signed by one of the trusted keys
    key_id: str | None = None  # the key the signature names (None: not signed)
    name: str | None = None  # the trusted key's name
    problem: str = ""  # why it is not trusted, for the messages

    def describe(self) -> str:
        if self.trusted:
            return f"{self.name} ({self.key_id})" if self.name and self.name != self.key_id else str(self.key_id)
        return "unsigned" if self.key_id is None else f"not trusted (key {self.key_id})"

    def to_dict(self) -> dict:
        return {"trusted": self.trusted, "key_id": self.key_id, "name": self.name, "describe": self.describe()}


def check_signer(info: dict, signature: dict | None, trust: Trust) -> Signer:
    """Who signed bundle.json `info` (`signature`: its signature.json), checked against `trust`; never raises."""
    if signature is None:
        return Signer(False, problem="it is not signed")
    claimed = str(signature.get("key_id"))
    key = signing.verify(trust.keys, signature, signed_message(info))
    if key is not None:
        return Signer(True, key.key_id, key.name)
    if any(k.key_id == claimed for k in trust.keys):
        return Signer(False, claimed, problem=f"its signature by key {claimed} does not match its {BUNDLE_JSON}: "
                                              f"it was changed after it was signed")
    trusted = ", ".join(k.label for k in trust.keys) or "no key yet"
    return Signer(False, claimed, problem=f"it is signed by key {claimed}, which this device does not trust "
                                          f"(it trusts {trusted})")


def require_trusted(version: str, signer: Signer, trust: Trust) -> Signer:
    """`signer` if trusted; with `allow_unsigned`, also any other, with a warning; else BundleError saying how to
    fix it (the message names no local path: a fleet publishes it)."""
    if signer.trusted:
        return signer
    if trust.allow_unsigned:
        log.warning("bundle %s is taken although %s: allow_unsigned = true in [models] of this device's "
                    "configuration (a lab setting: anyone who can hand this device a bundle can change its "
                    "models)", version, signer.problem)
        return signer
    raise BundleError(f"bundle {version} is refused: {signer.problem}. A device takes only bundles signed by a "
                      f"key in [models] trusted_keys of its configuration: sign it on the host (`digitlite models "
                      f"pack ... --sign KEY`; `digitlite models keygen` makes a key) and trust KEY.pub on the "
                      f"device, or set allow_unsigned = true in [models] on a lab device")
