"""The `digitlite` command: subcommand registry, helpful errors, `digitlite data`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import digitlite


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitlite", *args], capture_output=True, text=True, env=env)


def test_help_lists_every_command(capsys):
    assert digitlite.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in digitlite.COMMANDS:
        assert name in out


def test_every_registered_command_resolves():
    import importlib

    for name, (target, _) in digitlite.COMMANDS.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_unknown_command_suggests_close_match(capsys):
    assert digitlite.main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "train" in err


def test_data_json_summary(mnist_dir):
    result = run("data", "--data-dir", str(mnist_dir), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["train"] == 60000 and summary["test"] == 10000
    assert sum(summary["test_per_class"]) == 10000


def test_data_missing_dir_is_a_clear_error(tmp_path):
    result = run("data", "--data-dir", str(tmp_path / "absent"))
    assert result.returncode == 1
    assert "is not a folder" in result.stderr and "Traceback" not in result.stderr


def test_data_offline_empty_cache_fails(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "DIGITLITE_MNIST_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    result = run("data", "--offline", env=env)
    assert result.returncode == 1
    assert "offline" in result.stderr and "Traceback" not in result.stderr
    assert f"cache {tmp_path / 'digitlite' / 'mnist'}: empty" in result.stderr  # says what it tried


def test_package_entry_points(mnist_dir):
    result = subprocess.run([sys.executable, "-m", "train", "data", "--data-dir", str(mnist_dir), "--json"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([sys.executable, "-m", "convert", "read"], capture_output=True, text=True)
    assert result.returncode == 2 and "valid commands are convert, check, compare" in result.stderr


def test_every_help_text_says_each_default_once(capsys):
    import re

    for name in digitlite.COMMANDS:
        try:
            digitlite.main([name, "--help"])
        except SystemExit as exit_info:
            assert exit_info.code == 0, name
        out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare as one line
        assert "(default: None)" not in out, f"digitlite {name} --help: {out}"
        doubled = re.search(r"\(default[^()]*\)\s*\(default", out)
        assert doubled is None, f"digitlite {name} --help says a default twice: ...{out[doubled.start() - 60:][:160]}"


@pytest.mark.parametrize("command", ["train", "tune", "architectures", "convert", "check", "compare"])
def test_tensorflow_commands_take_log_level(command, capsys):
    with pytest.raises(SystemExit):
        digitlite.main([command, "--help"])
    assert "--log-level {debug,info,warning,error}" in " ".join(capsys.readouterr().out.split())


def test_native_lines_are_kept_off_unless_debug_and_shown_when_the_block_fails(capfd, monkeypatch):
    import os

    monkeypatch.setenv(digitlite.TF_LOG_ENV, "3")
    with digitlite.native_lines_off():
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on\n")
    assert "oneDNN" not in capfd.readouterr().err
    with pytest.raises(ImportError), digitlite.native_lines_off():
        os.write(2, b"E0000 could not load libtensorflow\n")
        raise ImportError("libtensorflow")
    assert "could not load libtensorflow" in capfd.readouterr().err
    monkeypatch.setenv(digitlite.TF_LOG_ENV, "0")  # --log-level debug
    with digitlite.native_lines_off():
        os.write(2, b"I0000 shown at debug\n")
    assert "shown at debug" in capfd.readouterr().err
