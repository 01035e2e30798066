"""The device's configuration file: a TOML file whose keys become the defaults of `digitlite run`.

On a Raspberry Pi the installer writes `/etc/digitlite.toml` (example: `edge_app/deploy/digitlite.toml`) and
the systemd unit starts `digitlite run --headless --config /etc/digitlite.toml`. Options given on the command
line still win: the run command passes the returned dict to `parser.set_defaults(...)`.

    python -m edge_app.settings edge_app/deploy/digitlite.toml     # prints the run options it maps to
"""

from __future__ import annotations

import difflib
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from digitlite import HelpFormatter
from edge_app.runtime import MAX_THREADS

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
    """The `digitlite run` defaults set by one TOML document.

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
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc}). See edge_app/deploy/digitlite.toml for an "
                          f"example.") from exc
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
        config[option.dest] = value
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
    chosen = config_path(path)
    if chosen is None:
        return {}
    if not chosen.is_file():
        raise FileNotFoundError(f"configuration file {chosen} not found. Copy the example: "
                                f"sudo cp edge_app/deploy/digitlite.toml {DEFAULT_CONFIG}, or pass --config "
                                f"with an existing file.")
    return parse_run_config(chosen.read_text(encoding="utf-8"), str(chosen), chosen.resolve().parent)


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


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Check a digitlite TOML configuration file and print the "
                                                 "`digitlite run` options it sets.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("config", nargs="?", default=None,
                        help=f"the file; default: ${CONFIG_ENV}, else {DEFAULT_CONFIG} when it exists")
    args = parser.parse_args(argv)
    try:
        config = load_run_config(args.config)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(config, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
