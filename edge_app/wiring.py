"""Putting the device together: the one place a reader is built (`make_reader`, its models verified against
their manifest once) and the one place a live loop is wired (`build_live`: history, outputs, loop), from the
plain options of `edge_app.config` (`ReaderOptions`, `LiveOptions`). The command lines (`edge_app.cli`) parse
into those options and call these; nothing here parses or prints.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from edge_app.config import MEMORY_HISTORY, HistorySettings, LiveOptions, LoopSettings, MqttAuth, ReaderOptions
from edge_app.runtime import (
    DEFAULT_MODEL,
    DEFAULT_RECOGNIZER,
    DEFAULT_REGIONS,
    Classifier,
    ModelError,
    Recognizer,
    RegionFinder,
    RuntimeNotFound,
)

log = logging.getLogger(__name__)

# What building a reader may raise: a model missing, corrupt or unverified (ModelError), no LiteRT runtime,
# an option out of range (ValueError). Every command answers them with its message and exit code 2.
MODEL_ERRORS = (ModelError, RuntimeNotFound, ValueError)


def model_paths(options: ReaderOptions) -> dict[str, Path]:
    """{"model", "regions", "recognizer"}: the files the reader of `options` loads (see `model_source`)."""
    return model_source(options)[0]


def model_source(options: ReaderOptions) -> tuple[dict[str, Path], str | None]:
    """The files the reader of `options` loads, and the bundle they come from (None: none of them). A file the
    options do not name comes from the active bundle (`digitlite models activate`), else from the models
    installed with digitlite."""
    return next(model_sources(options))


def model_sources(options: ReaderOptions) -> Iterator[tuple[dict[str, Path], str | None]]:
    """Each set of files the reader of `options` may load, in the order `reader_from` tries them: the active
    bundle's, those of the bundles active before it (newest first), then the models installed with digitlite;
    a file the options name replaces its role's in each."""
    from edge_app.store.models import ModelStore

    named = {"model": options.model, "regions": options.regions, "recognizer": options.recognizer}
    packaged = {"model": DEFAULT_MODEL, "regions": DEFAULT_REGIONS, "recognizer": DEFAULT_RECOGNIZER}
    if not all(named.values()):
        for version, active in ModelStore().candidates():
            yield {role: Path(named[role] or active[role]) for role in packaged}, version
    yield {role: Path(named[role] or packaged[role]) for role in packaged}, None


def watch_models():
    """What the live loop compares to notice a newly activated bundle: the store's pointer file's stamp."""
    from edge_app.store.models import ModelStore

    return ModelStore().stamp()


def make_reader(model: str | Path | None = None, *, classifier: Classifier | None = None, **options):
    """The one place a reader is built: its three models verified against the manifest (unless
    `allow_unverified`), each file read once.

    Args:
        model: the .tflite digit classifier (single drawn digits); None: the packaged one.
        classifier: a digit classifier already loaded, to share (the web app's canvas uses it); `model` and
            `threads` are then its own.
        **options: the other fields of `edge_app.config.ReaderOptions` (regions, recognizer, threads,
            allow_unverified, min_confidence, roi).

    Returns:
        An `edge_app.read.DigitReader`; `.integrity.sha256` identifies its recognizer.

    Raises:
        One of MODEL_ERRORS.
    """
    return reader_from(ReaderOptions(model=model, **options), classifier)


def reader_from(options: ReaderOptions, classifier: Classifier | None = None):
    """`make_reader` of a whole `ReaderOptions` (what the command lines parse into). An active bundle that cannot
    be loaded is logged as an error and passed over for the one active before it, then for the packaged models
    (`model_sources`); the reader's `fallback` then says why (None when the active models loaded)."""
    failed = []
    for paths, bundle in model_sources(options):
        try:
            reader = _reader_of(paths, options, classifier)
        except MODEL_ERRORS as exc:
            if bundle is None:  # the packaged models, or the files the options name: nothing to fall back to
                raise
            failed.append(f"bundle {bundle} cannot be loaded ({exc})")
            log.error("model bundle %s cannot be loaded (%s): trying the one active before it, else the models "
                      "installed with digitlite", bundle, exc)
            continue
        reader.bundle = bundle
        reader.fallback = None
        if failed:
            reader.fallback = "; ".join(failed) + f": using {f'bundle {bundle}' if bundle else 'the packaged models'}"
            log.error("the active models could not be loaded, the device reads with older ones: %s", reader.fallback)
        return reader
    raise AssertionError("model_sources always ends with the packaged models")  # pragma: no cover


def _reader_of(paths: dict[str, Path], options: ReaderOptions, classifier: Classifier | None):
    from edge_app.read import DigitReader, parse_roi

    verified = not options.allow_unverified
    if classifier is None:
        classifier = Classifier(paths["model"], threads=options.threads, require_verified=verified)
    threads = classifier.runtime.threads
    return DigitReader(RegionFinder(paths["regions"], threads=threads, require_verified=verified),
                       Recognizer(paths["recognizer"], threads=threads, require_verified=verified),
                       min_confidence=options.min_confidence, roi=parse_roi(options.roi), classifier=classifier)


def check_live(options: LiveOptions) -> None:
    """ValueError naming the option, for live options out of range (before anything is opened)."""
    for name, value, low in (("--stable-frames", options.stable_frames, 1), ("--max-frames", options.max_frames, 1),
                             ("--history-keep", options.history_keep, 1),
                             ("--outbox-limit", options.outbox_limit, 1)):
        if value is not None and value < low:
            raise ValueError(f"{name} {value} is too small; it must be at least {low}.")
    if options.max_fps is not None and not options.max_fps > 0:
        raise ValueError(f"--max-fps {options.max_fps}: give a positive number of frames per second")
    if options.mqtt:
        from edge_app.outputs.mqtt import check_topic, parse_broker

        parse_broker(options.mqtt)
        check_topic(options.topic)
        if options.ha_discovery:
            from edge_app.outputs.homeassistant import check_prefix

            check_prefix(options.ha_prefix)
    plausibility(options)


def plausibility(options: LiveOptions):
    """The `edge_app.store.plausibility.Plausibility` of expect, max_step, digits (ValueError when out of range)."""
    from edge_app.store.plausibility import Plausibility

    return Plausibility(options.expect, options.max_step, options.digits)


def history_path(options: LiveOptions) -> Path:
    from edge_app.store.history import default_history_path

    return Path(options.history) if options.history is not None else default_history_path()


def build_live(options: LiveOptions, reader, source, extra_sinks: Sequence = (), stdout: bool = True,
               reload=None, mqtt_auth: MqttAuth = MqttAuth()):  # noqa: B008
    """The live loop of `options`: the history, the outputs (stdout, video, MQTT, Home Assistant) and the loop;
    `reload` rebuilds the reader when the loop is asked to (SIGHUP: a newly activated bundle); MQTT connects with
    `mqtt_auth` (`edge_app.config.load_mqtt_auth`: never from the command line).

    Returns:
        An `edge_app.live.loop.LiveLoop`; the caller runs it (`edge_app.live.loop.run_until_stopped`).

    Raises:
        HistoryError, ValueError, ImportError: the history cannot be opened (a corrupt one; one that cannot be
            written is replaced by one in memory, see `open_history`), a bad save path, no paho-mqtt.
    """
    from edge_app.live.loop import LiveLoop
    from edge_app.outputs.local import JsonLines, VideoFile

    history, history_off = open_history(options)
    sinks = []
    try:
        if stdout:
            sinks.append(JsonLines())
        if options.save is not None:
            sinks.append(VideoFile(options.save))
        if options.mqtt:
            sinks += _mqtt_sinks(options, history, mqtt_auth)
    except BaseException:
        for sink in sinks:
            sink.close()
        history.close()
        raise
    sinks.extend(extra_sinks)
    settings = LoopSettings(stable_frames=options.stable_frames, max_fps=options.max_fps)
    loop = LiveLoop(source, reader, history, sinks, settings, source_name=options.source or "",
                    model_sha256=reader.integrity.sha256, max_frames=options.max_frames,
                    plausibility=plausibility(options), reload=reload, watch=watch_models if reload else None)
    loop.status.history_off = history_off
    return loop


def open_history(options: LiveOptions):
    """(the readings history of `options`, None), or, when it cannot be written at start (a read-only disk or
    file), (a history in memory for this run, why): the device keeps reading, and says so loudly.

    Raises:
        HistoryError: the history cannot be opened for another reason (corrupt, a newer schema, not SQLite).
    """
    from edge_app.store.history import HistoryError, ReadingStore

    path = history_path(options)
    try:
        return ReadingStore(path, HistorySettings(keep=options.history_keep, outbox_limit=options.outbox_limit)), None
    except (HistoryError, OSError) as exc:  # OSError: its folder cannot be created
        why = not_writable(path)
        if why is None:
            raise
        log.debug("opening the readings history %s failed: %s", path, exc)
        off = (f"the readings history {path} cannot be written ({why}). Reading goes on with the history "
               f"OFF: this run's readings are kept in memory only (the last {MEMORY_HISTORY.keep}) and lost when it "
               f"ends. Fix: make {path} writable by this user, or choose another with --history or [history] "
               f"path, then restart.")
    log.error("%s", off)
    memory = replace(MEMORY_HISTORY, outbox_limit=min(options.outbox_limit, MEMORY_HISTORY.keep))
    return ReadingStore(":memory:", memory), off


def not_writable(path: Path) -> str | None:
    """Why a history at `path` cannot be written (None: it can, as far as the file system says). SQLite writes
    the file and, beside it, its -wal and -shm files: both the file and its folder must take writes."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return None
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{existing} is on a read-only file system"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is read-only for this user"
    folder = path.parent if path.parent.exists() else existing
    if not os.access(folder, os.W_OK):
        return f"the folder {folder} is not writable by this user"
    return None


def _mqtt_sinks(options: LiveOptions, history, auth: MqttAuth) -> list:
    from edge_app.outputs.mqtt import MqttOutbox, OutboxPublisher

    discovery = None
    if options.ha_discovery:
        from edge_app.outputs.homeassistant import Discovery

        discovery = Discovery(options.topic, options.device_name or "", options.ha_prefix, version())
    publisher = OutboxPublisher(history, options.mqtt, options.topic, device=options.device_name,
                                presence=discovery.presence if discovery else None, auth=auth)
    sinks = [MqttOutbox(publisher)]
    if discovery is not None:
        from edge_app.outputs.homeassistant import HomeAssistant

        sinks.append(HomeAssistant(publisher, discovery, history))
    return sinks


def version() -> str:
    """digitlite's installed version ("0" in a checkout that is not installed)."""
    try:
        from importlib.metadata import version as installed

        return installed("digitlite")
    except Exception:
        return "0"
