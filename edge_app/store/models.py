"""The device's model bundles: installed beside each other (never over one), one of them active, switched by
replacing one small file with a rename, so that a power cut at any moment leaves a complete, verified model.

    <store>/bundles/<version>/    an installed bundle: bundle.json, manifest.json and its .tflite files
    <store>/active.json           {"version", "previous", "time"}: the bundle the reader loads (none: the packaged
                                  models); replaced whole, by rename, then the folder synced
    <store>/last_update.json      {"time", "version", "outcome", "reason"}: what the last update did (the page shows it)
    <store>/.incoming-<pid>-*, <store>/bundles/.staging-<pid>-*   what an interrupted install left (removed later)

The store is `$DIGITLITE_MODEL_STORE`, else `$XDG_DATA_HOME/digitlite/models` (`~/.local/share/...`). Which
model the reader loads comes from `active_paths()`: the active bundle's files after their sha256 are checked;
if they do not check, the previous ones in turn, then the models installed with the package.

    digitlite models list
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from digitdata.atomic import sync_dir, write_json, write_synced
from edge_app.config import BUNDLE_LIMITS, MODEL_STORE_ENV, BundleLimits
from edge_app.runtime.bundle import (
    BUNDLE_JSON,
    GOLDEN_CSV,
    GOLDEN_PREFIX,
    Bundle,
    BundleError,
    check_version,
    golden_of,
    open_bundle,
    parse_sidecar,
    read_sidecar,
    sha256_bytes,
)
from edge_app.store.history import now_iso

log = logging.getLogger(__name__)

ACTIVE = "active.json"
LAST_UPDATE = "last_update.json"  # the outcome of the last install, activation or rollback, for the page and MQTT
KEEP_PREVIOUS = 10  # versions remembered for rollback
Step = Callable[[str], None]  # called after each durable step of an install or an activation (tests kill there)


def default_store() -> Path:
    if os.environ.get(MODEL_STORE_ENV):
        return Path(os.environ[MODEL_STORE_ENV])
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "digitlite" / "models"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ModelStore:
    """The installed bundles of one device (`root`); see the module docstring for its layout."""

    def __init__(self, root: str | Path | None = None, limits: BundleLimits = BUNDLE_LIMITS):
        self.root = Path(root) if root is not None else default_store()
        self.limits = limits

    @property
    def bundles(self) -> Path:
        return self.root / "bundles"

    # ------------------------------------------------------------------------------------------ reading

    def pointer(self) -> dict:
        """active.json ({"version": None, "previous": []} when there is none or it cannot be read)."""
        try:
            pointer = json.loads((self.root / ACTIVE).read_text())
            if isinstance(pointer, dict) and isinstance(pointer.get("previous", []), list):
                return {"version": pointer.get("version"), "previous": pointer.get("previous", []),
                        "time": pointer.get("time")}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.error("%s cannot be read (%s): the packaged models are used", self.root / ACTIVE, exc)
        return {"version": None, "previous": [], "time": None}

    def stamp(self) -> tuple[int, int] | None:
        """(mtime in ns, size) of active.json, None without one: what changes when a bundle is activated or rolled
        back (a stat, cheap enough to look at between frames; the file is read only when it changed)."""
        try:
            found = (self.root / ACTIVE).stat()
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size

    def info(self, version: str) -> dict:
        """bundle.json of an installed bundle (BundleError when it is not installed)."""
        path = self.bundles / check_version(version) / BUNDLE_JSON
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BundleError(f"bundle {version} is not installed in {self.bundles} ({exc})") from exc

    def installed(self) -> list[dict]:
        """Every installed bundle's bundle.json, oldest first, with "active": bool."""
        active = self.pointer()["version"]
        found = []
        for folder in sorted(self.bundles.glob("[!.]*")) if self.bundles.is_dir() else []:
            with contextlib.suppress(BundleError):
                found.append({**self.info(folder.name), "active": folder.name == active})
        return sorted(found, key=lambda b: (b.get("created", ""), b["version"]))

    def paths(self, version: str) -> dict[str, Path]:
        """{role: file} of an installed bundle, after every file's sha256 is checked (BundleError if one fails)."""
        info, folder = self.info(version), self.bundles / version
        for name, meta in info["files"].items():
            try:
                content = (folder / name).read_bytes()
            except OSError as exc:
                raise BundleError(f"bundle {version}: {name} cannot be read ({exc})") from exc
            if sha256_bytes(content) != meta["sha256"]:
                raise BundleError(f"bundle {version}: {name} differs from its sha256 in {BUNDLE_JSON}")
        return {role: folder / name for role, name in info["roles"].items()}

    def golden(self, version: str) -> list[tuple[str, bytes, str]]:
        """(name, image bytes, label) of the golden images an installed bundle carries ([] when none)."""
        folder = self.bundles / check_version(version)
        return golden_of({p.name: p.read_bytes() for p in folder.iterdir()
                          if p.name == GOLDEN_CSV or p.name.startswith(GOLDEN_PREFIX)})

    def active_paths(self) -> tuple[str | None, dict[str, Path] | None]:
        """(version, {role: file}) of the active bundle, else of the newest previous one that checks; (None, None):
        use the packaged models."""
        pointer = self.pointer()
        for version in [pointer["version"], *pointer["previous"]]:
            if version is None:
                break
            try:
                return version, self.paths(version)
            except BundleError as exc:
                log.error("%s; trying the one active before it", exc)
        return None, None

    # ------------------------------------------------------------------------------------------ installing

    def fetch(self, source: str, sha256: str | None = None) -> Bundle:
        """A checked bundle from a path or an http(s) URL; its sha256 is `sha256`, else the one written beside it
        (`NAME.sha256`, fetched from `URL.sha256` too). Nothing is written."""
        if source.startswith(("http://", "https://")):
            data = self._download(source)
            if sha256 is None:
                side = source + ".sha256"
                sha256 = parse_sidecar(self._download(side, 256).decode(errors="replace"), side)
        else:
            path = Path(source)
            try:
                size = path.stat().st_size
                if size > self.limits.max_bytes:
                    raise BundleError(f"{path} is {size:,} bytes, more than a bundle may be "
                                      f"({self.limits.max_bytes:,})")
                data = path.read_bytes()
            except OSError as exc:
                raise BundleError(f"bundle {path} cannot be read: {exc}") from exc
            if sha256 is None:
                sha256 = read_sidecar(path)
        return open_bundle(data, sha256, self.limits)

    def _download(self, url: str, limit: int | None = None) -> bytes:
        """The body at `url`: at most `limit` bytes, within `download_total_s` (BundleError otherwise)."""
        limit = limit or self.limits.max_bytes
        deadline = time.monotonic() + self.limits.download_total_s
        chunks, size = [], 0
        try:
            with urllib.request.urlopen(url, timeout=self.limits.download_timeout_s) as response:
                while chunk := response.read(min(2**16, limit + 1 - size)):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        raise BundleError(f"{url} is more than {limit:,} bytes: not a bundle this device takes")
                    if time.monotonic() > deadline:
                        raise BundleError(f"{url} took more than {self.limits.download_total_s:g} s to download")
        except BundleError:
            raise
        except (OSError, ValueError) as exc:
            raise BundleError(f"cannot download {url}: {exc}") from exc
        return b"".join(chunks)

    def install(self, bundle: Bundle, step: Step | None = None) -> bool:
        """Unpack a checked bundle into bundles/<version>/, beside the others: written into a staging folder,
        synced, then renamed into place. Returns False when that version is already installed from the same file.

        Raises:
            BundleError: another bundle with the same version is installed.
        """
        step = step or (lambda name: None)
        self.remove_leftovers()
        target = self.bundles / bundle.version
        if target.exists():
            if self.info(bundle.version).get("bundle_sha256") == bundle.sha256:
                self.paths(bundle.version)  # what is there must still check
                return False
            raise BundleError(f"another bundle with version {bundle.version} is installed; a bundle is never "
                              f"written over: give the new one another version")
        self.bundles.mkdir(parents=True, exist_ok=True)
        staging = self.bundles / f".staging-{os.getpid()}-{bundle.version}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            for name, content in bundle.files.items():
                write_synced(staging / name, content)
                step(f"wrote {name}")
            installed = {**bundle.info, "bundle_sha256": bundle.sha256}  # which file it came from
            write_synced(staging / BUNDLE_JSON, json.dumps(installed, indent=2).encode())
            sync_dir(staging)
            step("staged")
            os.rename(staging, target)
            sync_dir(self.bundles)
            step("installed")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return True

    def remove_leftovers(self) -> list[Path]:
        """Remove what installs and activations that were killed left: staging folders, unrenamed pointers."""
        removed = []
        staged = list(self.bundles.glob(".staging-*")) if self.bundles.is_dir() else []
        pointers = list(self.root.glob(f".{ACTIVE}.*.tmp")) if self.root.is_dir() else []
        for path in staged + pointers:
            pid = path.name.split("-")[1] if path in staged else path.name.split(".")[-2]
            if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    def last_update(self) -> dict | None:
        """The outcome of the last update (`record_update`), or None."""
        try:
            return json.loads((self.root / LAST_UPDATE).read_text())
        except (OSError, ValueError):
            return None

    def record_update(self, version: str | None, outcome: str, reason: str = "") -> dict:
        """Keep what an update did ("activated", "refused", "rolled back", "failed"), replaced atomically."""
        record = {"time": now_iso(), "version": version, "outcome": outcome,
                  "reason": reason}
        write_json(self.root / LAST_UPDATE, record)
        return record

    # ------------------------------------------------------------------------------------------ switching

    def activate(self, version: str, step: Step | None = None) -> dict:
        """Make `version` the bundle the reader loads: its files checked, then active.json replaced by rename.

        Returns:
            The new pointer.
        """
        self.paths(version)
        pointer = self.pointer()
        previous = [v for v in [pointer["version"], *pointer["previous"]] if v and v != version]
        return self._point({"version": version, "previous": previous[:KEEP_PREVIOUS]}, step)

    def rollback(self, step: Step | None = None) -> dict:
        """Go back to the bundle active before this one (or to the packaged models when there was none)."""
        pointer = self.pointer()
        if pointer["version"] is None:
            raise BundleError("no bundle is active: the packaged models are in use, there is nothing to roll back")
        for i, version in enumerate(pointer["previous"]):
            try:
                self.paths(version)
            except BundleError as exc:
                log.error("%s; not rolling back to it", exc)
                continue
            return self._point({"version": version, "previous": pointer["previous"][i + 1:]}, step)
        return self._point({"version": None, "previous": []}, step)

    def _point(self, pointer: dict, step: Step | None) -> dict:
        step = step or (lambda name: None)
        pointer = {**pointer, "time": now_iso()}
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{ACTIVE}.{os.getpid()}.tmp"
        write_synced(tmp, json.dumps(pointer, indent=2).encode())
        step("pointer written")
        os.replace(tmp, self.root / ACTIVE)
        sync_dir(self.root)
        step("activated")
        return pointer
