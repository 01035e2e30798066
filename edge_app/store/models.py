"""The device's model bundles: installed beside each other (never over one), one of them active, switched by
replacing one small file with a rename, so that a power cut at any moment leaves a complete, verified model.

    <store>/bundles/<version>/    an installed bundle: bundle.json, manifest.json and its .tflite files
    <store>/active.json           {"version", "previous", "time"}: the bundle the reader loads (none: the packaged
                                  models); replaced whole, by rename, then the folder synced
    <store>/last_update.json      {"time", "version", "outcome", "reason"}: what the last update did (the page shows it)
    <store>/.incoming-<pid>-*, <store>/bundles/.staging-<pid>-*   what an interrupted install left (removed later)

The store is `$DIGITLITE_MODEL_STORE`, else `$XDG_DATA_HOME/digitlite/models` (`~/.local/share/...`). Which
model the reader loads comes from `candidates()`: the active bundle's files after their sha256 are checked; if
they do not check (or do not load, `edge_app.wiring.reader_from`), the previous ones in turn, then the models
installed with the package.

What it takes and keeps is bounded: a bundle is installed only when one of the device's trusted keys signed it
(`Trust`, from `[models]` of the configuration file) and the disk keeps `min_free_bytes` free after it; a URL is
only ever http(s), bounded in bytes and time; a local source only a regular file; at most `keep_bundles` bundles
stay installed (the active one and those it rolls back to first); a bundle a fleet update refused is removed.

    digitlite models list
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from digitdata.atomic import sync_dir, write_json, write_synced
from edge_app.config import BUNDLE_LIMITS, MODEL_STORE_ENV, BundleLimits, load_trust
from edge_app.runtime.bundle import (
    BUNDLE_JSON,
    GOLDEN_CSV,
    GOLDEN_PREFIX,
    SIGNATURE_JSON,
    Bundle,
    BundleError,
    Signer,
    Trust,
    check_signer,
    check_version,
    golden_of,
    open_bundle,
    parse_sidecar,
    parse_signature,
    read_sidecar,
    require_trusted,
    sha256_bytes,
)
from edge_app.store.history import now_iso

log = logging.getLogger(__name__)

ACTIVE = "active.json"
LAST_UPDATE = "last_update.json"  # the outcome of the last install, activation or rollback, for the page and MQTT
KEEP_PREVIOUS = 10  # versions remembered for rollback
Step = Callable[[str], None]  # called after each durable step of an install or an activation (tests kill there)
REMOTE = ("http://", "https://")  # the only sources a fleet announcement may name


class DownloadError(BundleError):
    """A bundle that could not be fetched: not an http(s) URL, unreachable, too large, too slow. Its message may
    name local or internal addresses: a fleet logs it and publishes a plain one."""


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to another http(s) URL (urllib would follow one to ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.startswith(REMOTE):
            raise DownloadError(f"{req.full_url} redirects to {newurl!r}, which is not an http(s) URL")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


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

    def __init__(self, root: str | Path | None = None, limits: BundleLimits = BUNDLE_LIMITS,
                 trust: Trust | None = None, config: str | Path | None = None):
        self.root = Path(root) if root is not None else default_store()
        self.limits = limits
        self._trust, self._config = trust, config

    @property
    def bundles(self) -> Path:
        return self.root / "bundles"

    @property
    def trust(self) -> Trust:
        """The keys this device takes bundles from: given, else `[models]` of its configuration file (`config`,
        else $DIGITLITE_CONFIG, else /etc/digitlite.toml; read once).

        Raises:
            ConfigError, FileNotFoundError, signing.KeyFileError: the configuration or a key cannot be used.
        """
        if self._trust is None:
            self._trust = Trust.of(load_trust(self._config))
        return self._trust

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

    def _infos(self) -> list[dict]:
        """Every installed bundle's bundle.json, oldest first."""
        found = []
        for folder in sorted(self.bundles.glob("[!.]*")) if self.bundles.is_dir() else []:
            with contextlib.suppress(BundleError, ValueError):
                found.append(self.info(folder.name))
        return sorted(found, key=lambda b: (str(b.get("created", "")), str(b.get("version"))))

    def installed(self) -> list[dict]:
        """Every installed bundle's bundle.json, oldest first, with "active": bool and "signer" (who signed it, as
        this device's trusted keys say); its gate figures only when a trusted key signed them ("gate": None
        otherwise: a bundle's own word about its accuracy is not shown)."""
        active = self.pointer()["version"]
        found = []
        for info in self._infos():
            signer = self.signer(info["version"])
            found.append({**info, "gate": info.get("gate") if signer.trusted else None, "active":
                          info["version"] == active, "signer": signer.to_dict()})
        return found

    def signer(self, version: str) -> Signer:
        """Who signed an installed bundle, checked against this device's trusted keys now."""
        try:
            signature = parse_signature((self.bundles / check_version(version) / SIGNATURE_JSON).read_bytes())
        except FileNotFoundError:
            signature = None
        except (OSError, BundleError):
            return Signer(False, "?", problem="its signature cannot be read")
        return check_signer(self.info(version), signature, self.trust)

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
        return next(self.candidates(), (None, None))

    def candidates(self) -> Iterator[tuple[str, dict[str, Path]]]:
        """(version, {role: file}) of the active bundle, then of each one active before it, newest first: those
        whose files check (one that does not is logged and skipped)."""
        pointer = self.pointer()
        for version in [pointer["version"], *pointer["previous"]]:
            if version is None:
                return
            try:
                yield version, self.paths(version)
            except (BundleError, ValueError) as exc:
                log.error("%s; trying the one active before it", exc)

    # ------------------------------------------------------------------------------------------ installing

    def fetch(self, source: str, sha256: str | None = None, remote_only: bool = False) -> Bundle:
        """A checked bundle from a path or an http(s) URL; its sha256 is `sha256`, else the one written beside it
        (`NAME.sha256`, fetched from `URL.sha256` too). Nothing is written.

        Args:
            remote_only: refuse anything but an http(s) URL (what a fleet announces is never a local file).

        Raises:
            DownloadError: the bundle cannot be fetched; BundleError: it is not a valid bundle.
        """
        if source.startswith(REMOTE):
            data = self._download(source)
            if sha256 is None:
                side = source + ".sha256"
                sha256 = parse_sidecar(self._download(side, 256).decode(errors="replace"), side)
        elif remote_only:
            raise DownloadError(f"the announced url {source[:200]!r} is not an http:// or https:// URL: a device "
                                f"fetches announced bundles only over http(s)")
        else:
            data = self._read_local(Path(source))
            if sha256 is None:
                sha256 = read_sidecar(source)
        return open_bundle(data, sha256, self.limits)

    def _read_local(self, path: Path) -> bytes:
        """A bundle file's bytes: a regular file only (never a FIFO or a device), at most `max_bytes`."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait for a writer
        except OSError as exc:
            raise DownloadError(f"bundle {path} cannot be read: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as f:
            found = os.fstat(f.fileno())
            if not stat.S_ISREG(found.st_mode):
                raise DownloadError(f"{path} is not a regular file (a device, a FIFO or a folder): give a bundle file")
            if found.st_size > self.limits.max_bytes:
                raise DownloadError(f"{path} is {found.st_size:,} bytes, more than a bundle may be "
                                    f"({self.limits.max_bytes:,})")
            data = f.read(self.limits.max_bytes + 1)
        if len(data) > self.limits.max_bytes:
            raise DownloadError(f"{path} grew past {self.limits.max_bytes:,} bytes while it was read")
        return data

    def _download(self, url: str, limit: int | None = None) -> bytes:
        """The body at `url`: at most `limit` bytes, within `download_total_s`, redirected only to http(s)
        (DownloadError otherwise)."""
        limit = limit or self.limits.max_bytes
        deadline = time.monotonic() + self.limits.download_total_s
        chunks, size = [], 0
        opener = urllib.request.build_opener(_HttpOnlyRedirects)
        try:
            with opener.open(url, timeout=self.limits.download_timeout_s) as response:
                while chunk := response.read(min(2**16, limit + 1 - size)):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        raise DownloadError(f"{url} is more than {limit:,} bytes: not a bundle this device takes")
                    if time.monotonic() > deadline:
                        raise DownloadError(f"{url} took more than {self.limits.download_total_s:g} s to download")
        except BundleError:
            raise
        except (OSError, ValueError) as exc:
            raise DownloadError(f"cannot download {url}: {exc}") from exc
        return b"".join(chunks)

    def verify(self, bundle: Bundle) -> Signer:
        """Who signed `bundle`, if this device trusts them (BundleError otherwise, see `require_trusted`)."""
        return require_trusted(bundle.version, check_signer(bundle.info, bundle.signature, self.trust), self.trust)

    def verify_installed(self, version: str) -> Signer:
        """As `verify`, for an installed bundle (what activating one checks again)."""
        return require_trusted(version, self.signer(version), self.trust)

    def check_newer(self, bundle: Bundle) -> None:
        """BundleError unless `bundle` was made after the active one (its signed `created` time): what a fleet
        announces never takes a device back to an older bundle; `digitlite models rollback` on the device does."""
        active = self.pointer()["version"]
        if active is None:
            return
        try:
            current = self.info(active)
        except BundleError:
            return  # the active bundle is gone: the packaged models or an older one are in use
        made, now = _created(bundle.info), _created(current)
        if made is None or (now is not None and made <= now):
            raise BundleError(f"bundle {bundle.version} (made {bundle.info.get('created')}) is not newer than the "
                              f"active bundle {active} (made {current.get('created')}): an announcement never takes a "
                              f"device back; `digitlite models rollback` on the device does")

    def check_room(self, bundle: Bundle) -> None:
        """BundleError unless the store's disk keeps `min_free_bytes` free after unpacking `bundle`."""
        need = sum(len(content) for content in bundle.files.values()) + self.limits.min_free_bytes
        where = next(p for p in (self.root, *self.root.parents) if p.exists())
        free = shutil.disk_usage(where).free
        if free < need:
            raise BundleError(f"the store's disk has {free:,} bytes free; bundle {bundle.version} needs "
                              f"{need - self.limits.min_free_bytes:,} and {self.limits.min_free_bytes:,} must stay "
                              f"free: remove a bundle or free some space")

    def install(self, bundle: Bundle, step: Step | None = None) -> bool:
        """Unpack a checked bundle into bundles/<version>/, beside the others: its signer checked, the disk's room,
        then written into a staging folder, synced, and renamed into place; then the store is pruned to
        `keep_bundles`. Returns False when that version is already installed from the same file.

        Raises:
            BundleError: no trusted key signed it, no room for it, or another bundle with the same version is
                installed.
        """
        step = step or (lambda name: None)
        self.verify(bundle)
        self.remove_leftovers()
        target = self.bundles / bundle.version
        if target.exists():
            if self.info(bundle.version).get("bundle_sha256") == bundle.sha256:
                self.paths(bundle.version)  # what is there must still check
                return False
            raise BundleError(f"another bundle with version {bundle.version} is installed; a bundle is never "
                              f"written over: give the new one another version")
        self.check_room(bundle)
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
        self.prune(keep=bundle.version)
        return True

    def discard(self, version: str) -> bool:
        """Remove an installed bundle that was refused or failed, unless it is active or one to roll back to.
        Returns whether it was removed."""
        pointer = self.pointer()
        if version in (pointer["version"], *pointer["previous"]) or not (self.bundles / version).is_dir():
            return False
        self._remove(version)
        return True

    def prune(self, keep: str | None = None) -> list[str]:
        """Remove installed bundles beyond `keep_bundles`: kept first are the active one, `keep` (just installed),
        those to roll back to (newest first), then the newest others. Returns the versions removed."""
        pointer = self.pointer()
        newest_first = [b["version"] for b in reversed(self._infos())]
        ranked = list(dict.fromkeys(v for v in [pointer["version"], keep, *pointer["previous"], *newest_first]
                                    if v in newest_first))
        removed = [v for v in ranked[self.limits.keep_bundles:] if v not in (pointer["version"], keep)]
        for version in removed:
            log.info("bundle %s removed: a store keeps %d bundles", version, self.limits.keep_bundles)
            self._remove(version)
        return removed

    def _remove(self, version: str) -> None:
        """Rename the bundle's folder out of the way (atomic: it is installed or gone), then delete it."""
        doomed = self.bundles / f".staging-{os.getpid()}-removed-{check_version(version)}"
        shutil.rmtree(doomed, ignore_errors=True)
        os.rename(self.bundles / version, doomed)
        sync_dir(self.bundles)
        shutil.rmtree(doomed, ignore_errors=True)

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
        """Make `version` the bundle the reader loads: its signer and files checked, then active.json replaced by
        rename.

        Returns:
            The new pointer.

        Raises:
            BundleError: no trusted key signed it, or its files do not check.
        """
        self.verify_installed(version)
        self.paths(version)
        pointer = self.pointer()
        previous = [v for v in [pointer["version"], *pointer["previous"]]
                    if v and v != version and (self.bundles / v).is_dir()]
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


def _created(info: dict) -> datetime | None:
    """When a bundle was made (bundle.json's `created`, signed with it); None when it does not say."""
    try:
        made = datetime.fromisoformat(str(info.get("created")))
    except ValueError:
        return None
    return made if made.tzinfo is not None else None
