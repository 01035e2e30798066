"""The device configuration file (edge_app/config.py): the example parses and maps to `digitlite run` options,
and every mistake is an error that names the key, the value and the fix."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from edge_app import config as settings
from edge_app.config import ConfigError, load_run_config, parse_run_config

EXAMPLE = Path(__file__).resolve().parents[1] / "edge_app" / "deploy" / "digitlite.toml"


def test_example_config_maps_to_run_options():
    config = load_run_config(EXAMPLE)
    # `model` and `threads` are commented out: the installed model and runtime.DEFAULT_THREADS apply.
    assert config == {
        "source": "picamera",
        "headless": True,
        "stable_frames": 3,
        "min_confidence": 0.6,
        "history": "/var/lib/digitlite/readings.db",  # the service's StateDirectory
        "web": False,
        "host": "0.0.0.0",
        "port": 8080,
    }


def test_every_key_maps_to_a_distinct_run_option():
    dests = [o.dest for o in settings.OPTIONS.values()]
    assert len(dests) == len(set(dests))


def test_tables_and_kebab_case_keys():
    text = '''
stable-frames = 5
[mqtt]
broker = "10.0.0.2:1883"
topic = "meters/gas"
[web]
enabled = true
port = 9000
'''
    assert parse_run_config(text) == {"stable_frames": 5, "mqtt": "10.0.0.2:1883", "topic": "meters/gas",
                                      "web": True, "port": 9000}


def test_unknown_key_names_it_suggests_and_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        parse_run_config("stable_frame = 3\n", "dev.toml")
    message = str(err.value)
    assert "dev.toml" in message and "'stable_frame'" in message
    assert "Did you mean 'stable_frames'" in message
    for key in settings.OPTIONS:
        assert key in message


def test_unknown_key_inside_a_table_suggests_the_dotted_key():
    with pytest.raises(ConfigError, match=r"unknown key 'web.prot'.*Did you mean 'web.port'"):
        parse_run_config("[web]\nprot = 8080\n")


@pytest.mark.parametrize("text, words", [
    ('threads = "four"\n', ["'threads' must be an integer", "'four'", "Example: threads = 2"]),
    ("threads = true\n", ["'threads' must be an integer", "True"]),
    ("headless = 1\n", ["'headless' must be true or false"]),
    ("[web]\nport = 70000\n", ["out of range", "1 to 65535"]),
    ("min_confidence = 2\n", ["out of range", "0 to 1"]),
])
def test_wrong_values_say_what_was_received_and_what_is_valid(text, words):
    with pytest.raises(ConfigError) as err:
        parse_run_config(text, "dev.toml")
    for word in words:
        assert word in str(err.value), f"{word!r} not in: {err.value}"


def test_integer_is_accepted_for_a_float_option():
    assert parse_run_config("min_confidence = 1\n") == {"min_confidence": 1.0}


def test_invalid_toml_names_the_file():
    with pytest.raises(ConfigError, match=r"dev.toml: not valid TOML"):
        parse_run_config("threads = \n", "dev.toml")


def test_relative_model_path_is_taken_from_the_config_folder(tmp_path):
    config = tmp_path / "etc" / "digitlite.toml"
    config.parent.mkdir()
    config.write_text('model = "models/digits_int8.tflite"\n')
    assert load_run_config(config)["model"] == str(tmp_path / "etc" / "models" / "digits_int8.tflite")


def test_default_path_env_and_missing_files(tmp_path, monkeypatch):
    monkeypatch.delenv(settings.CONFIG_ENV, raising=False)
    monkeypatch.setattr(settings, "DEFAULT_CONFIG", tmp_path / "absent.toml")
    assert load_run_config() == {}  # no /etc/digitlite.toml: the run command keeps its own defaults

    default = tmp_path / "digitlite.toml"
    default.write_text("threads = 2\n")
    monkeypatch.setattr(settings, "DEFAULT_CONFIG", default)
    assert load_run_config() == {"threads": 2}

    chosen = tmp_path / "other.toml"
    chosen.write_text("threads = 3\n")
    monkeypatch.setenv(settings.CONFIG_ENV, str(chosen))
    assert load_run_config() == {"threads": 3}

    with pytest.raises(FileNotFoundError, match=r"absent.toml not found.*--config"):
        load_run_config(tmp_path / "absent.toml")


def test_check_against_parser_rejects_options_the_command_lacks():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    settings.check_against_parser({"threads": 2}, parser)
    with pytest.raises(ConfigError, match=r"web.port.*\(port\)"):
        settings.check_against_parser({"threads": 2, "port": 80}, parser)


def test_config_defaults_lose_to_the_command_line():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--source", default="0")
    parser.set_defaults(**parse_run_config('threads = 4\nsource = "picamera"\n'))
    args = parser.parse_args(["--threads", "2"])
    assert (args.threads, args.source) == (2, "picamera")


def test_cli_prints_the_options_or_the_error(capsys, tmp_path):
    from edge_app.cli import config_main

    assert config_main([str(EXAMPLE)]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "picamera"
    bad = tmp_path / "bad.toml"
    bad.write_text("thread = 4\n")
    assert config_main([str(bad)]) == 2  # as `run` refuses it
    assert "Did you mean 'threads'" in capsys.readouterr().err
