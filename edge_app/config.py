"""Every default of the device, in one place: the tuned numbers as frozen dataclasses (units in the trailing
comments), and the TOML configuration file whose keys become the defaults of `digitlite run` and `serve`.

The command lines (`edge_app/cli.py`) take their defaults from here, and the configuration file's keys
(`OPTIONS`) are checked against the command line that uses them (`check_against_parser`), so a default has one
home. On a Raspberry Pi the installer writes `/etc/digitlite.toml` (example: `edge_app/deploy/digitlite.toml`)
and the systemd unit starts `digitlite run --headless --config /etc/digitlite.toml`; options given on the
command line still win.

    digitlite doctor --config edge_app/deploy/digitlite.toml    # checks the file, lists the options it sets
"""


from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edge_app.runtime.interpreter import DEFAULT_THREADS, MAX_THREADS

# ---------------------------------------------------------------------------------------------- shared
WORK_SIDE = 2048  # px: the long side pictures are read at; decoded images and live frames are reduced to it
EXAMPLE_JPEG_QUALITY = 90  # of the frame kept with a stable reading (live or uploaded), for a correction
STREAM_QUALITY = 75  # JPEG quality of the web stream: a 640x480 frame is ~40 kB, fine over phone Wi-Fi

# ---------------------------------------------------------------------------------------------- the reader
# A region whose digits' mean confidence is below this is more likely a word, a mark or a smudge: on 3,000
# validation regions (held-out training digits, a fifth without any digit) the mean at 0.75 keeps 80 % of the
# numbers exact and reads nothing on 95 % of the digit-free ones, where the least sure digit at 0.5 gave 79 % and
# 91 % (measured 2026-12-04 with the first released recognizer).
MIN_CONFIDENCE = 0.75

@dataclass(frozen=True)
class ReaderSettings:
    """The reader's tuned numbers, in one place (each model's own are in its manifest entry)."""

    threshold: float = 0.5  # region map value that counts as "number here"
    max_regions: int = 32  # regions read per picture at most (bounded work for any picture, noise included)
    # Margins added to a region before it is read, in its heights: on the validation scenes 97 % of the lines'
    # ink lies within 0.30 above and below the decoded region and 0.57 beyond its ends (2026-12-04); the
    # recognizer learned cuts up to 0.5 (above, below) and 1.4 (ends) looser than the digits, and marks in them.
    pad_height: float = 0.3
    pad_ends: float = 0.6
    read_height: int = 64  # px: a region is cut from the picture at most this tall (then resized to 32)
    zoom_below_px: float = 14.0  # regions shorter than this (finder input px) get a closer look, at their part
    max_upscale: float = 3.0  # the closer look enlarges the picture at most this much
    join_gap: float = 0.6  # regions on one line closer than this many heights are one number (the map often
    # parts a narrow "1" or a wide gap from the rest of its row)
    empty_below_scale: float = 0.6  # a picture shrunk more than this for the first look, where it found nothing,
    empty_tiles: int = 2  # ... is looked at again in this many tiles per side (at most 4 more looks)
    work_side: int = WORK_SIDE  # px: larger pictures are read at this long side (bounded work per picture)


@dataclass(frozen=True)
class TableSettings:
    """`digitlite read --table` (`edge_app.read.table`): how rules are told from writing, which ink is writing, how
    sure a cell's number must be, and the work per page. The picture is read at most ReaderSettings.work_side."""

    max_cells: int = 600  # cells a table may have (rows x columns): a finer grid (graph paper) is refused; each
    #                       cell with ink is one recognizer run, so a page's work is bounded
    min_table_share: float = 0.1  # of the picture's area: the box of a table's net of rules covers at least this
    threshold_block: float = 1 / 40  # of the picture's long side: the neighbourhood ink is told from paper in
    threshold_c: float = 12.0  # grey levels: ink is at least this much darker than its neighbourhood
    rule_kernel: float = 1 / 20  # of the table's width (height): straight runs of ink this long may be rules ...
    rule_cells: float = 1.5  # ... and, once the cells' pitch is known, runs this many cells long (writing stays in one)
    rule_span: float = 0.3  # of the table across: a line of rule pixels covering less is writing, not a rule
    rule_edge: float = 0.08  # ... a rule's thickness reaches as far as its pixels cover this share
    rule_slack: int = 2  # px (rectified): a rule this far off straight is still one line
    rule_gap_px: int = 3  # px (rectified): a faint rule's breaks up to twice this long are bridged
    rule_max_share: float = 0.2  # of the rules' median spacing: a thicker "rule" is a pen stroke, not a ruled line
    rule_present: float = 0.5  # of a cell's side: a rule covering less of it is missing there (a merged cell)
    min_cell_px: int = 12  # px (rectified): rules closer than this are one rule; a cell holds a digit at least this big
    cell_inset: float = 0.04  # of a cell's side: cut this far inside its rules (their ragged edges stay out)
    ink_min_extent: float = 0.15  # of a cell's inner height: ink parts smaller than this are specks, not writing ...
    ink_min_px: int = 10  # px (rectified): ... or smaller than this in a large cell (a small number in a tall one)
    sure_above: float = 0.75  # the least sure digit's confidence: a cell's number below it is marked unsure ("37?")
    number_above: float = 0.3  # ... and below this, the cell's ink is taken as text, not a number


# ---------------------------------------------------------------------------------------------- images
# Formats a phone or a browser sends; the only decoders Pillow may try on bytes from the network.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")

# Local files (`digitlite read`, an image-folder source) may also be TIFF scans.
FILE_FORMATS = (*UPLOAD_FORMATS, "TIFF")

@dataclass(frozen=True)
class ImageLimits:
    """What an image may be. The pixel limit, working size and degenerate shapes are the same everywhere; the
    formats and byte limit depend on where the bytes come from (`UPLOAD_LIMITS`, `FILE_LIMITS`)."""

    max_bytes: int = 16 * 2**20  # B: a phone JPEG is 2-8 MB; the bytes are held in memory while decoding
    max_pixels: int = 50_000_000  # header width x height: a 48 MP phone photo fits, a decompression bomb does not
    work_side: int = WORK_SIDE  # px: decoded images and frames are reduced to this long side
    min_side: int = 8  # px: the least a digit can be drawn in; a thinner image holds no digit
    max_aspect: float = 25.0  # long side / short side: a longer strip is a line or a border, not writing
    max_decode_bytes: int = 256 * 2**20  # B an image may take decoded at full size, checked from its header: a
    #                                      1 GB Raspberry Pi decodes two uploads at once beside the service
    formats: tuple[str, ...] = UPLOAD_FORMATS  # the Pillow decoders allowed to run

UPLOAD_LIMITS = ImageLimits()

FILE_LIMITS = ImageLimits(max_bytes=64 * 2**20, formats=FILE_FORMATS)  # B: a TIFF scan may be large


# ---------------------------------------------------------------------------------------------- the live loop
@dataclass(frozen=True)
class LoopSettings:
    """The loop's tuned numbers."""

    stable_frames: int = 3  # frames a reading must hold before it is reported
    max_fps: float | None = None  # frames read per second at most (None: as fast as the source delivers)
    fps_window: int = 30  # frames over which the frame rate is measured
    poll_s: float = 0.1  # s between checks for a stop request while waiting (pacing, a source that stalls)
    limits: ImageLimits = UPLOAD_LIMITS  # what a frame may be before the reader sees it (edge_app.read.images)
    example_jpeg_quality: int = EXAMPLE_JPEG_QUALITY  # of the frame kept with each stable reading, for corrections
    unstored_keep: int = 1_000  # stable readings held in memory while the history cannot store them (~5 kB each,
    #                             crops included, frames not): beyond it the oldest are dropped, and counted
    retry_s: float = 10.0  # s between attempts to store the held readings while no new stable reading comes
    model_check_s: float = 2.0  # s between looks at the active model bundle; a new one is loaded between frames


# ---------------------------------------------------------------------------------------------- the history
@dataclass(frozen=True)
class HistorySettings:
    """How much the history and its outbox keep."""

    keep: int = 1_000_000  # readings kept; older ones are deleted (about 300 B each: ~300 MB at the limit)
    outbox_limit: int = 10_000  # readings waiting for MQTT; beyond this the oldest are dropped, with a count
    busy_timeout_ms: int = 5_000  # ms to wait for another process's lock (`digitlite history` reading)
    examples_keep: int = 1_000  # last readings whose crops and frame are kept for a correction (~50 KB each at
    #                             640x480: ~50 MB); a corrected reading's examples are kept beyond it


# A history that cannot be written when the loop starts (a read-only disk or file): the run keeps reading with
# its readings in memory instead, lost when it ends. Bounded for a small board: ~3 MB of readings, ~5 MB of examples.
MEMORY_HISTORY = HistorySettings(keep=10_000, examples_keep=100)


# ---------------------------------------------------------------------------------------------- model bundles
MODEL_STORE_ENV = "DIGITLITE_MODEL_STORE"  # where installed bundles live, instead of the user's data folder


@dataclass(frozen=True)
class BundleLimits:
    """What a model bundle (edge_app.runtime.bundle) may be, checked before anything is unpacked."""

    max_bytes: int = 64 * 2**20  # B: a bundle file at most (the released int8 trio is ~0.5 MB)
    max_files: int = 48  # members of a bundle at most: 3 models, manifest, description, golden images and labels
    download_timeout_s: float = 30.0  # s without a byte from the server before a download is abandoned
    download_total_s: float = 600.0  # s a whole download may take (a server that trickles bytes is cut off)
    max_member_bytes: int = 32 * 2**20  # B one member may unpack to (its declared size; sparse ones are refused)
    max_unpacked_bytes: int = 64 * 2**20  # B all members together may unpack to, checked before one is read
    keep_bundles: int = 4  # bundles kept installed: the active one, then those it may roll back to, newest first
    min_free_bytes: int = 32 * 2**20  # B left free on the store's disk after an install (the history needs room)


BUNDLE_LIMITS = BundleLimits()
CANARY_MAX_READINGS = 500  # the newest corrected readings a new bundle is tried on (each: its regions and frame)
GOLDEN_MAX_IMAGES = 32  # golden images a bundle carries at most (read by the canary with both bundles)


@dataclass(frozen=True)
class TrustSettings:
    """Which bundles a device takes: the `[models]` table of its configuration file (`load_trust`), read by
    `digitlite models` (install, activate, follow) and the page."""

    trusted_keys: tuple[str, ...] = ()  # Ed25519 public keys: KEY.pub files (`digitlite models keygen`), their
    #                                     line or its base64; a bundle signed by none of them is refused
    allow_unsigned: bool = False  # a lab: unsigned bundles and unknown signers are taken, each with a warning
    base_dir: Path | None = None  # where relative key paths are taken from: the configuration file's folder


TRUST_KEYS = {  # the keys of [models], with an example each
    "trusted_keys": 'trusted_keys = ["/etc/digitlite/release.key.pub"]   # in [models]',
    "allow_unsigned": "allow_unsigned = false   # in [models]",
}


def parse_trust(table: object, where: str = "<config>", base_dir: Path | None = None) -> TrustSettings:
    """The TrustSettings of a `[models]` table (ConfigError naming the key, what it got and an example)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: 'models' must be a table ([models]), got {table!r}. Example: "
                          f"{TRUST_KEYS['trusted_keys']}")
    table = {key.replace("-", "_"): value for key, value in table.items()}
    unknown = sorted(set(table) - set(TRUST_KEYS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(TRUST_KEYS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} in [models].{hint} Valid keys are: "
                          f"{', '.join(TRUST_KEYS)}.")
    keys = table.get("trusted_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k.strip() for k in keys):
        raise ConfigError(f"{where}: 'trusted_keys' in [models] must be a list of key files or keys, got "
                          f"{keys!r}. Example: {TRUST_KEYS['trusted_keys']}")
    allow = table.get("allow_unsigned", False)
    if not isinstance(allow, bool):
        raise ConfigError(f"{where}: 'allow_unsigned' in [models] must be true or false, got {allow!r}. "
                          f"Example: {TRUST_KEYS['allow_unsigned']}")
    return TrustSettings(tuple(keys), allow, base_dir)


def load_trust(path: str | Path | None = None) -> TrustSettings:
    """The `[models]` table of the configuration file (`config_path`); TrustSettings() when there is none.

    Raises:
        FileNotFoundError: `path` (or $DIGITLITE_CONFIG) names a file that does not exist.
        ConfigError: the file or its [models] table is not valid.
    """
    chosen = config_path(path)
    if chosen is None:
        return TrustSettings()
    if not chosen.is_file():
        raise FileNotFoundError(f"configuration file {chosen} not found: pass --config with an existing file")
    try:
        table = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{chosen}: not valid TOML ({exc})") from exc
    return parse_trust(table.get("models", {}), str(chosen), chosen.resolve().parent)


# ---------------------------------------------------------------------------------------------- what a command asks
SOURCE = "picamera"  # the live source of `digitlite run` (see `edge_app.live.sources.open_source`)
MQTT_TOPIC = "digitlite/readings"
HA_PREFIX = "homeassistant"  # Home Assistant's MQTT discovery prefix (its own default)


@dataclass(frozen=True)
class ReaderOptions:
    """Which reader a command builds (`edge_app.wiring.make_reader`): its models and how it reads. Every command
    line that reads takes these options, with these defaults; None for a model is the active one (the
    packaged release)."""

    model: Path | None = None  # the .tflite digit classifier (single drawn digits)
    regions: Path | None = None  # the .tflite region finder
    recognizer: Path | None = None  # the .tflite number recognizer
    threads: int = DEFAULT_THREADS  # interpreter (XNNPACK) threads
    allow_unverified: bool = False  # load a model whose sha256 does not match its manifest entry
    min_confidence: float = MIN_CONFIDENCE  # numbers whose digits' mean confidence is below this are dropped
    roi: str | None = None  # "x,y,w,h" px: only this part of each frame is read


@dataclass(frozen=True)
class LiveOptions:
    """What a live mode is asked to do (`digitlite run`, `serve --source`): its source, how long a reading must
    hold, where readings go. The command line's defaults and the TOML file's keys are these fields."""

    source: str | None = SOURCE
    stable_frames: int = LoopSettings.stable_frames  # frames a reading must hold to be reported
    max_frames: int | None = None  # stop after this many frames (None: until the source ends or a signal)
    max_fps: float | None = None  # frames read per second at most (None: as fast as the source delivers)
    save: Path | None = None  # write the annotated frames to this .mp4
    history: Path | None = None  # the readings history (None: `edge_app.store.history.default_history_path()`)
    history_keep: int = HistorySettings.keep  # readings the history keeps
    outbox_limit: int = HistorySettings.outbox_limit  # readings kept for MQTT while the broker is away
    mqtt: str | None = None  # broker HOST[:PORT]
    topic: str = MQTT_TOPIC
    ha_discovery: bool = True  # with mqtt, announce the device to Home Assistant
    ha_prefix: str = HA_PREFIX
    device_name: str | None = None  # this device's name in Home Assistant and MQTT (None: the host name)
    expect: str | None = None  # plausibility: "increasing", or None
    max_step: int | None = None  # plausibility: the largest change from the previous value, in counts
    digits: int | None = None  # plausibility: how many digits a reading has


# ---------------------------------------------------------------------------------------------- MQTT
@dataclass(frozen=True)
class MqttSettings:
    """The publisher's tuned numbers."""

    keepalive_s: int = 30  # s between pings; a broker that stops answering is noticed after 1.5x this
    reconnect_min_s: int = 1  # s: first wait before reconnecting, doubled at each failure up to ...
    reconnect_max_s: int = 30  # s: ... this (paho's reconnect_delay_set takes whole seconds)
    inflight: int = 20  # messages handed to the client and not yet acknowledged (paho's own default window)
    idle_s: float = 0.5  # s the publisher thread sleeps when it has nothing to do (new readings wake it)
    drain_s: float = 2.0  # s close() keeps publishing the outbox (a short run's last readings) before it stops
    close_s: float = 3.0  # s close() waits for the client's network thread; past it the thread is abandoned
    check_s: float = 5.0  # s `digitlite doctor` and `models announce` wait for the broker to accept the device


# Who the device is to its broker, and how the connection is protected. Only the configuration file's [mqtt]
# table or the environment give these, never the command line: `ps` shows every process's arguments. The
# environment wins over the file (a secret kept in a systemd EnvironmentFile, mode 0600).
MQTT_AUTH_ENV = {
    "username": "DIGITLITE_MQTT_USERNAME",
    "password": "DIGITLITE_MQTT_PASSWORD",
    "tls": "DIGITLITE_MQTT_TLS",  # true/false
    "ca_file": "DIGITLITE_MQTT_CA_FILE",
    "cert_file": "DIGITLITE_MQTT_CERT_FILE",
    "key_file": "DIGITLITE_MQTT_KEY_FILE",
}


@dataclass(frozen=True)
class MqttAuth:
    """The device's MQTT credentials and TLS files (`load_mqtt_auth`); the default is an anonymous, plain
    connection. The password never appears in a repr or a log line."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False  # TLS even without ca_file: the broker's certificate is checked against the system's CAs
    ca_file: Path | None = None  # PEM: the CA that signed the broker's certificate (turns TLS on)
    cert_file: Path | None = None  # PEM: this device's certificate, for a broker that asks for one (TLS)
    key_file: Path | None = None  # PEM: its private key (else cert_file holds both)

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls or self.ca_file or self.cert_file)

    def describe(self) -> str:
        """Who connects and how, for messages: "user 'meter' over TLS (CA /etc/ca.pem)", never the password."""
        who = f"user {self.username!r}" if self.username else "no user name (anonymous)"
        if not self.uses_tls:
            return f"{who}, without TLS"
        ca = f"CA {self.ca_file}" if self.ca_file else "the system's CAs"
        return f"{who} over TLS ({ca}{', client certificate ' + str(self.cert_file) if self.cert_file else ''})"


# ---------------------------------------------------------------------------------------------- the web page
HOST = "127.0.0.1"  # loopback only: reaching the camera from the network is a choice (--host 0.0.0.0)

PORT = 8080

MAX_FPS = 15.0  # live frames processed per second at most; a phone sees no difference above this

@dataclass(frozen=True)
class ConnectionLimits:
    """What a connection may hold: a client that connects and sends nothing, or its headers a byte at a time, is
    closed; more connections than the caps evict the oldest one still waiting for its request."""

    header_s: float = 10.0  # s from connecting (or the end of the last response) to a request's complete headers
    keep_alive_s: int = 5  # s an idle keep-alive connection stays open (uvicorn's timeout_keep_alive)
    header_bytes: int = 16 * 1024  # B of request line and headers at most (h11's max_incomplete_event_size)
    max_connections: int = 64  # open connections at once, all clients (streams, uploads, page loads)
    per_client: int = 16  # open connections from one address (a browser opens about 6)

CONNECTION_LIMITS = ConnectionLimits()


@dataclass(frozen=True)
class BodyLimits:
    """How request bodies are received: a slow or stalled client holds no upload slot and no one else up."""

    idle_s: float = 10.0  # s a client may send nothing in the middle of a body; then 408 and the connection closes
    total_s: float = 120.0  # s for a whole body: 16 MB at about 1 Mbit/s (a phone on poor Wi-Fi)
    buffered_bytes: int = 64 * 2**20  # B of bodies held at once, all clients together; past it, 503 and retry
    concurrent: int = 2  # large uploads decoded and read at once, each only once its body is in (a Pi has little RAM)
    small_pixels: int = 2_000_000  # px (header width x height): an upload this small takes a slot of its own lane,
    #                                so a phone photo or a drawing never waits behind a queue of large images
    concurrent_small: int = 1  # small uploads decoded and read at once
    shutdown_poll_s: float = 0.25  # s between checks, while a body arrives, that the server is not shutting down


# ---------------------------------------------------------------------------------------------- the file
DEFAULT_CONFIG = Path("/etc/digitlite.toml")
CONFIG_ENV = "DIGITLITE_CONFIG"  # overrides DEFAULT_CONFIG when no path is given (tests, a second instance)


class ConfigError(ValueError):
    """The configuration file is not valid TOML, has an unknown key, or a value of the wrong type."""


@dataclass(frozen=True)
class Option:
    """One configuration key: the `digitlite run` option it sets and what it accepts."""

    dest: str  # the argparse dest of `digitlite run`
    kind: type  # str, int, float or bool
    help: str
    example: str  # a valid TOML line, shown in errors
    low: float | None = None  # inclusive bounds for numbers
    high: float | None = None
    path: bool = False  # a file path: relative values are taken from the config file's folder
    cli: bool = True  # False: a key of the file only (a secret), read by its own loader, never a command-line option


# The one table of configuration keys. A dotted key is a key inside a [table]. Add a key here when
# `digitlite run` gets an option that belongs in a device's configuration.
OPTIONS: dict[str, Option] = {
    "source": Option("source", str, "frame source: picamera, a camera index, a video file, a URL, synthetic",
                     'source = "picamera"'),
    "model": Option("model", str, "the .tflite digit classifier (default: the int8 one installed with digitlite)",
                    'model = "/opt/digitlite/models/digits_int8.tflite"', path=True),
    "regions": Option("regions", str, "the .tflite region finder (default: the int8 one installed with digitlite)",
                      'regions = "/opt/digitlite/models/regions_int8.tflite"', path=True),
    "recognizer": Option("recognizer", str, "the .tflite number recognizer (default: the int8 one installed)",
                         'recognizer = "/opt/digitlite/models/recognizer_int8.tflite"', path=True),
    "allow_unverified": Option("allow_unverified", bool, "use a model that does not match its manifest entry",
                               "allow_unverified = false"),
    "threads": Option("threads", int, "interpreter (XNNPACK) threads", "threads = 2", 1, MAX_THREADS),
    "headless": Option("headless", bool, "no preview window (a service has no display)", "headless = true"),
    "stable_frames": Option("stable_frames", int, "frames a reading must repeat before it is reported",
                            "stable_frames = 3", 1, 1000),
    "min_confidence": Option("min_confidence", float, "numbers whose digits' mean confidence is below this are dropped",
                             "min_confidence = 0.6", 0.0, 1.0),
    "max_fps": Option("max_fps", float, "frames read per second at most (leave CPU to the rest of the device)",
                      "max_fps = 15", 0.1, 1000),
    "history.path": Option("history", str, "the readings history (SQLite); every stable reading is stored first",
                           'path = "/var/lib/digitlite/readings.db"   # in [history]', path=True),
    "history.keep": Option("history_keep", int, "readings the history keeps; older ones are deleted",
                           "keep = 1000000   # in [history]", 1, 10**9),
    "mqtt.broker": Option("mqtt", str, "MQTT broker to publish readings to, host[:port]",
                          'broker = "localhost:1883"   # in [mqtt]'),
    "mqtt.topic": Option("topic", str, "MQTT topic for readings",
                         'topic = "digitlite/kitchen"   # in [mqtt]'),
    "mqtt.outbox_limit": Option("outbox_limit", int, "readings kept for MQTT while the broker is away; beyond it "
                                "the oldest are dropped", "outbox_limit = 10000   # in [mqtt]", 1, 10**8),
    "mqtt.ha_discovery": Option("ha_discovery", bool, "announce the device to Home Assistant (MQTT discovery)",
                                "ha_discovery = true   # in [mqtt]"),
    "mqtt.ha_prefix": Option("ha_prefix", str, "Home Assistant's MQTT discovery prefix",
                             'ha_prefix = "homeassistant"   # in [mqtt]'),
    "mqtt.device_name": Option("device_name", str, "this device's name in Home Assistant and MQTT messages",
                               'device_name = "water-meter"   # in [mqtt]'),
    # The broker's credentials and TLS files (`load_mqtt_auth`): file or environment only, never argv.
    "mqtt.username": Option("username", str, "the device's MQTT user name (or $DIGITLITE_MQTT_USERNAME)",
                            'username = "digitlite"   # in [mqtt]', cli=False),
    "mqtt.password": Option("password", str, "its MQTT password (or $DIGITLITE_MQTT_PASSWORD); keep the file "
                            "chmod 0640", 'password = "..."   # in [mqtt]', cli=False),
    "mqtt.tls": Option("tls", bool, "TLS to the broker, its certificate checked against the system's CAs "
                       "(ca_file names another CA)", "tls = true   # in [mqtt]", cli=False),
    "mqtt.ca_file": Option("ca_file", str, "PEM file of the CA that signed the broker's certificate (turns TLS on)",
                           'ca_file = "/etc/digitlite/mqtt-ca.pem"   # in [mqtt]', path=True, cli=False),
    "mqtt.cert_file": Option("cert_file", str, "PEM file of this device's client certificate (TLS)",
                             'cert_file = "/etc/digitlite/device.pem"   # in [mqtt]', path=True, cli=False),
    "mqtt.key_file": Option("key_file", str, "PEM file of that certificate's private key",
                            'key_file = "/etc/digitlite/device.key"   # in [mqtt]', path=True, cli=False),
    "plausibility.expect": Option("expect", str, "increasing: a reading below the previous value is suspect",
                                  'expect = "increasing"   # in [plausibility]'),
    "plausibility.max_step": Option("max_step", int, "the largest change from the previous value, in counts",
                                    "max_step = 50   # in [plausibility]", 0, 10**12),
    "plausibility.digits": Option("digits", int, "how many digits a reading has",
                                  "digits = 6   # in [plausibility]", 1, 64),
    "web.enabled": Option("web", bool, "serve the live web page while running",
                          "enabled = true   # in [web]"),
    "web.host": Option("host", str, "address the web page listens on", 'host = "0.0.0.0"   # in [web]'),
    "web.port": Option("port", int, "TCP port of the web page", "port = 8080   # in [web]", 1, 65535),
}

_TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _flatten(table: dict, prefix: str = "") -> dict[str, object]:
    """{"web": {"port": 1}} -> {"web.port": 1}; kebab-case keys are accepted as snake_case."""
    flat: dict[str, object] = {}
    for key, value in table.items():
        name = prefix + key.replace("-", "_")
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _check_value(where: str, key: str, value: object, option: Option) -> object:
    kind = option.kind
    # bool is a subclass of int in Python, but `threads = true` is a mistake, not 1.
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{where}: {key!r} must be {_TYPE_WORDS[kind]} ({option.help}), got {value!r} "
                          f"({type(value).__name__}). Example: {option.example}")
    if option.low is not None and not option.low <= value <= option.high:  # type: ignore[operator]
        raise ConfigError(f"{where}: {key!r} = {value!r} is out of range; valid values are "
                          f"{option.low:g} to {option.high:g} ({option.help}). Example: {option.example}")
    return value


def parse_run_config(text: str, where: str = "<config>", base_dir: Path | None = None) -> dict:
    """The `digitlite run` defaults set by one TOML document (the keys of the file only, such as the MQTT password,
    are checked but left out: `load_mqtt_auth` reads them).

    Args:
        text: the TOML text.
        where: the file name, for error messages.
        base_dir: the folder relative paths (`model`) are taken from; default: the current folder.

    Returns:
        {run option dest: value}, only for the keys the document sets.

    Raises:
        ConfigError: invalid TOML, an unknown key (with close matches and the valid keys), a wrong type or an
            out-of-range value.
    """
    keys = parse_config(text, where, base_dir)
    return {OPTIONS[key].dest: value for key, value in keys.items() if OPTIONS[key].cli}


def parse_config(text: str, where: str = "<config>", base_dir: Path | None = None) -> dict[str, object]:
    """Every key one TOML document sets, checked: {dotted key: value}; relative paths taken from `base_dir`.

    Raises:
        ConfigError: as `parse_run_config`.
    """
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc}). See edge_app/deploy/digitlite.toml for an "
                          f"example.") from exc
    parse_trust(table.pop("models", {}), where, base_dir)  # `digitlite models`' own table: checked, not a run option
    config: dict[str, object] = {}
    for key, value in _flatten(table).items():
        option = OPTIONS.get(key)
        if option is None:
            close = difflib.get_close_matches(key, list(OPTIONS), n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}.{hint} Valid keys are: {', '.join(OPTIONS)} "
                              f"(a dotted key is a key inside its [table]).")
        value = _check_value(where, key, value, option)
        if option.path and isinstance(value, str):
            path = Path(value).expanduser()
            value = str(path if path.is_absolute() else (base_dir or Path.cwd()) / path)
        config[key] = value
    return config


def config_path(path: str | Path | None = None) -> Path | None:
    """The file to read: `path`, else $DIGITLITE_CONFIG, else /etc/digitlite.toml if it exists, else None."""
    if path is not None:
        return Path(path)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def load_run_config(path: str | Path | None = None) -> dict:
    """The `digitlite run` defaults from a TOML configuration file.

    Args:
        path: the file; default: $DIGITLITE_CONFIG, else /etc/digitlite.toml when it exists, else none.

    Returns:
        {run option dest: value} for the keys the file sets; {} when there is no file to read.

    Raises:
        FileNotFoundError: `path` (or $DIGITLITE_CONFIG) names a file that does not exist.
        ConfigError: the file is not valid (see `parse_run_config`).
    """
    keys = load_config(path)
    return {OPTIONS[key].dest: value for key, value in keys.items() if OPTIONS[key].cli}


def load_config(path: str | Path | None = None) -> dict[str, object]:
    """Every key the configuration file sets, checked ({dotted key: value}; {} when there is no file to read).

    Raises:
        FileNotFoundError, ConfigError: as `load_run_config`.
    """
    chosen = config_path(path)
    if chosen is None:
        return {}
    if not chosen.is_file():
        raise FileNotFoundError(f"configuration file {chosen} not found. Copy the example: "
                                f"sudo cp edge_app/deploy/digitlite.toml {DEFAULT_CONFIG}, or pass --config "
                                f"with an existing file.")
    return parse_config(chosen.read_text(encoding="utf-8"), str(chosen), chosen.resolve().parent)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _auth_from_env(environ) -> dict[str, object]:
    """The MQTT_AUTH_ENV variables that are set, as MqttAuth fields; an empty one is refused, as --token '' is (an
    unset variable is how to leave a value out; an empty one is a mistake that would silently mean none)."""
    given: dict[str, object] = {}
    for name, variable in MQTT_AUTH_ENV.items():
        value = environ.get(variable)
        if value is None:
            continue
        if not value.strip():
            raise ConfigError(f"${variable} is set but empty: give the {name.replace('_', ' ')}, or unset it "
                              f"(`unset {variable}`; in a systemd unit, remove the line).")
        if name == "tls":
            if value.strip().lower() not in _TRUE + _FALSE:
                raise ConfigError(f"${variable}={value!r}: expected true or false (1/0, yes/no).")
            given[name] = value.strip().lower() in _TRUE
        else:
            given[name] = value
    return given


def check_mqtt_auth(auth: MqttAuth) -> MqttAuth:
    """`auth`, or a ConfigError / FileNotFoundError that names what is wrong and the key that fixes it."""
    if auth.password is not None and not auth.username:
        raise ConfigError("an MQTT password is set without a user name: set username in [mqtt] of the "
                          "configuration file (or $DIGITLITE_MQTT_USERNAME).")
    if auth.key_file and not auth.cert_file:
        raise ConfigError(f"key_file {auth.key_file} is set without cert_file: set cert_file in [mqtt] (the "
                          f"device's certificate; $DIGITLITE_MQTT_CERT_FILE), or remove key_file.")
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(auth, name)
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"MQTT {name} {path} not found: copy the PEM file there, or fix {name} in "
                                    f"[mqtt] of the configuration file (or ${MQTT_AUTH_ENV[name]}).")
    return auth


def load_mqtt_auth(path: str | Path | None = None, environ=None) -> MqttAuth:
    """The device's MQTT credentials and TLS files: the configuration file's [mqtt] username, password, tls,
    ca_file, cert_file and key_file, each overridden by its environment variable (`MQTT_AUTH_ENV`).

    Args:
        path: the configuration file; default: $DIGITLITE_CONFIG, else /etc/digitlite.toml when it exists.
        environ: the environment (default: os.environ).

    Returns:
        An `MqttAuth`; the default (anonymous, no TLS) when neither sets anything.

    Raises:
        ConfigError: an invalid file, an empty variable, a password without a user name, a key without a
            certificate.
        FileNotFoundError: the configuration file or a PEM file it names does not exist.
    """
    keys = load_config(path)
    given = {OPTIONS[key].dest: value for key, value in keys.items()
             if key.startswith("mqtt.") and not OPTIONS[key].cli}
    given.update(_auth_from_env(os.environ if environ is None else environ))
    for name in ("ca_file", "cert_file", "key_file"):
        if given.get(name) is not None:
            given[name] = Path(str(given[name])).expanduser()
    return check_mqtt_auth(MqttAuth(**given))


def check_against_parser(config: dict, parser) -> None:
    """Raise ConfigError if `config` sets a dest that `parser` (argparse) does not have.

    The run command calls this before `parser.set_defaults(**config)`, so that a key in OPTIONS that the run
    command does not (yet) support is an error instead of being ignored.
    """
    dests = {action.dest for action in parser._actions}
    missing = sorted(set(config) - dests)
    if missing:
        keys = [k for k, o in OPTIONS.items() if o.dest in missing]
        raise ConfigError(f"configuration keys {', '.join(keys)} set options this command does not have "
                          f"({', '.join(missing)}); remove them from the configuration file.")
