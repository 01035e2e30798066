"""Putting the device together: the one place a reader is built (`make_reader`, its models verified against
their manifest once) and the one place a live loop is wired (`build_live`: history, outputs, loop), from the
plain options of `edge_app.config` (`ReaderOptions`, `LiveOptions`). The command lines (`edge_app.cli`) parse
into those options and call these; nothing here parses or prints.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from edge_app.config import LiveOptions, LoopSettings, ReaderOptions
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
    from edge_app.store.models import ModelStore

    version, active = ModelStore().active_paths()
    base = active or {"model": DEFAULT_MODEL, "regions": DEFAULT_REGIONS, "recognizer": DEFAULT_RECOGNIZER}
    named = {"model": options.model, "regions": options.regions, "recognizer": options.recognizer}
    paths = {role: Path(named[role] or base[role]) for role in base}
    return paths, version if active and not all(named.values()) else None


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
    """`make_reader` of a whole `ReaderOptions` (what the command lines parse into)."""
    from edge_app.read import DigitReader, parse_roi

    (paths, bundle), verified = model_source(options), not options.allow_unverified
    if classifier is None:
        classifier = Classifier(paths["model"], threads=options.threads, require_verified=verified)
    threads = classifier.runtime.threads
    reader = DigitReader(RegionFinder(paths["regions"], threads=threads, require_verified=verified),
                         Recognizer(paths["recognizer"], threads=threads, require_verified=verified),
                         min_confidence=options.min_confidence, roi=parse_roi(options.roi), classifier=classifier)
    reader.bundle = bundle
    return reader


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
               reload=None):
    """The live loop of `options`: the history, the outputs (stdout, video, MQTT, Home Assistant) and the loop;
    `reload` rebuilds the reader when the loop is asked to (SIGHUP: a newly activated bundle).

    Returns:
        An `edge_app.live.loop.LiveLoop`; the caller runs it (`edge_app.live.loop.run_until_stopped`).

    Raises:
        HistoryError, ValueError, ImportError: the history cannot be opened, a bad save path, no paho-mqtt.
    """
    from edge_app.config import HistorySettings
    from edge_app.live.loop import LiveLoop
    from edge_app.outputs.local import JsonLines, VideoFile
    from edge_app.store.history import ReadingStore

    history = ReadingStore(history_path(options), HistorySettings(keep=options.history_keep,
                                                                  outbox_limit=options.outbox_limit))
    sinks = []
    try:
        if stdout:
            sinks.append(JsonLines())
        if options.save is not None:
            sinks.append(VideoFile(options.save))
        if options.mqtt:
            sinks += _mqtt_sinks(options, history)
    except BaseException:
        for sink in sinks:
            sink.close()
        history.close()
        raise
    sinks.extend(extra_sinks)
    settings = LoopSettings(stable_frames=options.stable_frames, max_fps=options.max_fps)
    return LiveLoop(source, reader, history, sinks, settings, source_name=options.source or "",
                    model_sha256=reader.integrity.sha256, max_frames=options.max_frames,
                    plausibility=plausibility(options), reload=reload, watch=watch_models if reload else None)


def _mqtt_sinks(options: LiveOptions, history) -> list:
    from edge_app.outputs.mqtt import MqttOutbox, OutboxPublisher

    discovery = None
    if options.ha_discovery:
        from edge_app.outputs.homeassistant import Discovery

        discovery = Discovery(options.topic, options.device_name or "", options.ha_prefix, version())
    publisher = OutboxPublisher(history, options.mqtt, options.topic, device=options.device_name,
                                presence=discovery.presence if discovery else None)
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
