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
    assert result.returncode == digitlite.EXIT_BAD_INPUT
    assert "is not a folder" in result.stderr and "Traceback" not in result.stderr


def test_data_offline_empty_cache_fails(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "DIGITLITE_MNIST_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    result = run("data", "--offline", env=env)
    assert result.returncode == digitlite.EXIT_BAD_INPUT
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


# ---------------------------------------------------------------------------------------------- exit codes

# Each command's bad-input case: (command, argv, what its one line on stderr says); {T} is a temporary folder
# holding bad.toml (an unknown key), empty.toml and empty.jsonl, and nothing else. All are refused before any model,
# data set or TensorFlow loads, so they run in one interpreter in a few seconds.
BAD_INPUT = [
    ("data", ["--data-dir", "{T}/absent"], "is not a folder"),
    ("train", ["--epochs", "0"], "--epochs must be at least 1"),
    ("train-detector", ["--epochs", "0"], "--epochs must be at least 1"),
    ("train-recognizer", ["--epochs", "0"], "--epochs must be at least 1"),
    ("train-regions", ["--epochs", "0"], "--epochs must be at least 1"),
    ("architectures", ["--epochs", "0"], "--epochs must be at least 1"),
    ("tune", ["--max-trials", "0"], "must be at least 1"),
    ("convert", ["{T}/absent.keras", "--out", "{T}/m"], "absent.keras not found"),
    ("check", ["{T}/absent.tflite"], "absent.tflite not found"),
    ("compare", ["{T}/absent.tflite", "{T}/other.tflite", "--out", "{T}/compare"], "absent.tflite not found"),
    # A missing model: the same code in read, run and serve.
    ("read", ["{T}/bad.toml", "--model", "{T}/absent.tflite"], "absent.tflite not found"),
    ("run", ["--source", "synthetic", "--headless", "--model", "{T}/absent.tflite", "--history", "{T}/r.db"],
     "absent.tflite not found"),
    ("serve", ["--port", "70000"], "is not a TCP port"),
    ("history", ["--db", "{T}/absent.db"], "no readings history"),
    ("correct", ["1", "7", "--db", "{T}/absent.db"], "no readings history"),
    ("corrections", ["export", "{T}/out", "--db", "{T}/absent.db"], "no readings history"),
    ("eval-scenes", ["--count", "0"], "--count must be at least 1"),
    ("eval", ["{T}/absent"], "is not a folder"),
    ("models", ["install", "{T}/absent.tar", "--history", "{T}/r.db"], "cannot be read"),
    # A bad configuration: the same code in config and run.
    ("config", ["{T}/bad.toml"], "unknown key 'thread'"),
    ("run", ["--config", "{T}/bad.toml", "--source", "synthetic"], "unknown key 'thread'"),
    ("doctor", ["--threads", "0"], "interpreter threads must be"),
    ("bench", ["--check", "--history", "{T}/empty.jsonl"], "has no records"),
    ("no-such-command", [], "unknown command"),
]
SERVE_WITHOUT_MODEL = ("serve", ["--port", "0", "--model", "{T}/absent.tflite", "--history", "{T}/r.db"],
                       "absent.tflite not found")
CASE_MARK = "=== case"

EXIT_CODES_OF = f"""
import json, sys
import digitlite
codes = []
for argv in json.loads(sys.argv[1]):
    print("{CASE_MARK}", file=sys.stderr, flush=True)
    try:
        codes.append(digitlite.main(argv))
    except SystemExit as exit_info:  # argparse's own refusals
        codes.append(exit_info.code)
    sys.stderr.flush()
print(json.dumps({{"codes": codes, "tensorflow": "tensorflow" in sys.modules}}), file=sys.__stdout__)
"""


def test_help_shows_the_one_exit_code_table(capsys):
    assert digitlite.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "exit codes (every command):" in out
    for code, meaning in digitlite.EXIT_CODES.items():
        assert f"  {code}  {meaning.split()[0]}" in out, code
    assert list(digitlite.EXIT_CODES) == [digitlite.EXIT_OK, digitlite.EXIT_FAILED, digitlite.EXIT_BAD_INPUT,
                                          digitlite.EXIT_MISSING_EXTRA, digitlite.EXIT_REFUSED] == [0, 1, 2, 3, 4]


def test_every_command_exits_with_the_tables_code_for_bad_input(tmp_path):
    """Issue 35 item 4: every command's bad input exits 2 (`digitlite.EXIT_BAD_INPUT`), a missing model the same
    in read, run and serve, a bad configuration the same in config and run; each says why, with no traceback."""
    import importlib.util
    import os

    assert {case[0] for case in BAD_INPUT} >= set(digitlite.COMMANDS), "a command without a bad-input case"
    (tmp_path / "bad.toml").write_text("thread = 4\n")
    (tmp_path / "empty.toml").write_text("")
    (tmp_path / "empty.jsonl").write_text("")
    cases = BAD_INPUT + ([SERVE_WITHOUT_MODEL] if importlib.util.find_spec("fastapi") else [])
    argvs = [[name, *(arg.replace("{T}", str(tmp_path)) for arg in argv)] for name, argv, _ in cases]
    env = {**os.environ, "DIGITLITE_MODEL_STORE": str(tmp_path / "store"),
           "DIGITLITE_CONFIG": str(tmp_path / "empty.toml")}  # not this machine's /etc/digitlite.toml
    done = subprocess.run([sys.executable, "-c", EXIT_CODES_OF, json.dumps(argvs)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    said = done.stderr.split(CASE_MARK + "\n")[1:]
    for argv, (_, _, why), code, err in zip(argvs, cases, result["codes"], said, strict=True):
        assert code == digitlite.EXIT_BAD_INPUT and why in err, f"digitlite {' '.join(argv)}: exit {code}, {err}"
        assert "Traceback" not in err, err
    assert not result["tensorflow"], "a bad-input case loaded TensorFlow"
