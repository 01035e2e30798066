"""Model bundles: the reader's three models, their manifest entries and gate figures, as one file with a sha256.

A bundle is an uncompressed tar (`.tflite` files hardly compress) holding `bundle.json`, `manifest.json`, the
model files and, optionally, golden images with their labels (`golden.csv` and `golden-<name>` files: the canary
reads them with the new models and the ones in use), nothing else: no folders, links or devices. `bundle.json`
says the version, which file plays which role (`model`: the MNIST classifier, `regions`: the region finder,
`recognizer`: the number recognizer), each model file's sha256 and size, and each model's gate figures copied
from its manifest entry. The bundle file's own sha256 is written beside it (`NAME.sha256`, the `sha256sum`
format), so a device can check what it downloaded before it opens it.

`pack_release` makes one from a release folder (`digitlite models pack`, `digitlite convert --bundle`); `open_bundle`
checks one (bytes, members, names, sizes, every sha256, the TFLite header) without writing anything; the device's
store (`edge_app.store.models`) unpacks what it returns.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge_app.config import BUNDLE_LIMITS, GOLDEN_MAX_IMAGES, BundleLimits
from edge_app.runtime.integrity import (
    DEFAULT_MODEL_NAME,
    DEFAULT_RECOGNIZER_NAME,
    DEFAULT_REGIONS_NAME,
    MANIFEST_NAME,
    ModelError,
)

SCHEMA = 1
BUNDLE_JSON = "bundle.json"
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
    files: dict[str, bytes]  # every member but bundle.json, manifest.json included

    @property
    def version(self) -> str:
        return self.info["version"]

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


def pack_release(release: str | Path, out: str | Path, version: str | None = None, golden: str | Path | None = None,
                 limits: BundleLimits = BUNDLE_LIMITS) -> Bundle:
    """Write the bundle of the int8 models in `release` (a folder `digitlite convert` released into) to `out`,
    and its sha256 beside it; both atomically.

    Args:
        golden: a folder of labelled images (`truth.csv` or `labels.csv`: file,text) the bundle carries for the
            device's canary; at most GOLDEN_MAX_IMAGES.

    Raises:
        BundleError: a role's model or its manifest entry is missing, the golden folder is not usable, or the
            version is not valid.
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
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "roles": dict(ROLES), "files": described, "gate": gates}
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
        manifest = json.loads(members[MANIFEST_NAME])["models"]
        described, roles = info["files"], info["roles"]
        check_version(info["version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"not a digitlite bundle: {BUNDLE_JSON} or {MANIFEST_NAME} is missing or malformed "
                          f"({exc!r})") from exc
    if info.get("schema") != SCHEMA:
        raise BundleError(f"bundle schema {info.get('schema')!r}; this digitlite reads schema {SCHEMA}")
    if sorted(roles) != sorted(ROLES) or set(roles.values()) != set(described):
        raise BundleError(f"the bundle's roles {sorted(roles)} are not {sorted(ROLES)}, one file each")
    extra = {n for n in members if n == GOLDEN_CSV or n.startswith(GOLDEN_PREFIX)}
    if set(members) - extra != {*described, MANIFEST_NAME}:
        raise BundleError(f"the bundle holds {sorted(members)}; {BUNDLE_JSON} describes {sorted(described)}")
    for name, meta in described.items():
        content = members[name]
        if content[4:8] != b"TFL3":
            raise BundleError(f"{name} in the bundle is not a TFLite model")
        if sha256_bytes(content) != meta.get("sha256") or manifest.get(name, {}).get("sha256") != meta["sha256"]:
            raise BundleError(f"{name} in the bundle differs from the sha256 its {BUNDLE_JSON} and "
                              f"{MANIFEST_NAME} record")
    return Bundle(digest, info, members)


def _untar(data: bytes, limits: BundleLimits) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > limits.max_files:
                    raise BundleError(f"the bundle holds more than {limits.max_files} files")
                if not member.isreg() or not MEMBER.fullmatch(member.name) or member.name in members:
                    raise BundleError(f"the bundle holds {member.name!r}, which is not a plain file name (folders, "
                                      f"links, paths and repeated names are refused)")
                members[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError) as exc:
        raise BundleError(f"not a bundle: the file is not a complete tar archive ({exc})") from exc
    return members
