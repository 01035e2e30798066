"""`digitlite serve` as a user runs it: options, errors that say how to fix them, a real process stopped by Ctrl-C.

    .venv/bin/pytest tests/test_web_cli.py
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from web_support import model_path

from edge_app.cli import _serve_parser as build_parser
from edge_app.cli import serve_main
from edge_app.web.server import is_loopback

pytest.importorskip("fastapi", reason="the [web] extra is not installed")

START_S = 120  # generous for a busy machine: the process imports, loads the model, binds, then prints its URL


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        serve_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--source", "--model", "--host", "--port", "--token", "--stable-frames", "--max-upload-mb",
                 "--max-megapixels"):
        assert flag in out, flag
    assert "(default: 127.0.0.1)" in out


def test_defaults_are_safe():
    args = build_parser().parse_args([])
    assert args.host == "127.0.0.1" and is_loopback(args.host)
    assert args.source is None
    assert not is_loopback("0.0.0.0") and is_loopback("::1") and is_loopback("localhost")


@pytest.mark.parametrize("argv, words", [
    (["--port", "70000"], ["--port 70000", "1-65535"]),
    (["--stable-frames", "0"], ["--stable-frames", "at least 1"]),
    (["--max-upload-mb", "0"], ["--max-upload-mb", "at least"]),
])
def test_bad_values_are_refused_with_the_fix(capsys, argv, words):
    assert serve_main(argv) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err, (word, err)


def test_missing_model_says_how_to_get_one(capsys, tmp_path):
    assert serve_main(["--model", str(tmp_path / "nope.tflite"), "--port", "0"]) == 2  # as `read` and `run`
    err = capsys.readouterr().err
    assert "nope.tflite" in err and "digitlite convert" in err


def test_busy_port_says_so(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert serve_main(["--model", str(model_path()), "--port", str(port)]) == 2  # as `run --web`
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


def start_serve(*args: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "digitlite", "serve", "--model", str(model_path()), "--port", "0",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stdout:  # blocks until the server prints its URL (or exits)
        lines.append(line)
        match = re.search(r"http://[\w.\[\]:<> ']+?:(\d+)/", line)
        if match:
            return proc, f"http://127.0.0.1:{match.group(1)}/"
    proc.wait(START_S)
    pytest.fail(f"`digitlite serve` exited {proc.returncode} before serving: {''.join(lines)} {proc.stderr.read()}")


def get_json(url: str, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=START_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=START_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("`digitlite serve` did not stop on Ctrl-C")
    return proc.returncode, err


def test_serve_with_token_and_synthetic_source_then_ctrl_c(mnist_dir):
    proc, url = start_serve("--source", "synthetic", "--token", "t0k3n", "--max-fps", "5")
    try:
        status, body = get_json(url + "api/health")
        assert status == 401 and "token" in body["detail"]
        status, health = get_json(url + "api/health", "t0k3n")
        assert status == 200 and health["live"] is not None, health
    finally:
        code, err = stop(proc)
    assert code == 0, err


def test_serve_without_source_warns_when_open_to_the_network():
    proc, url = start_serve("--host", "0.0.0.0")
    try:
        status, health = get_json(url + "api/health")
        assert status == 200 and health["live"] is None and health["fps"] is None
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert "without --token" in err


def test_without_the_web_extra_the_error_names_it():
    blocked = "import sys; sys.modules['fastapi'] = None; sys.modules['uvicorn'] = None; "
    imported = subprocess.run([sys.executable, "-c", blocked + "import edge_app.web.app"], capture_output=True,
                              text=True)
    assert imported.returncode != 0 and "ImportError" in imported.stderr and "digitlite[web]" in imported.stderr
    served = subprocess.run([sys.executable, "-c", blocked + "import digitlite; sys.exit(digitlite.main(["
                             "'serve', '--port', '0']))"], capture_output=True, text=True)
    assert served.returncode == 3, served.stderr
    assert "pip install 'digitlite[web]'" in served.stderr
    helped = subprocess.run([sys.executable, "-c", blocked + "import digitlite; digitlite.main(['serve', '--help'])"],
                            capture_output=True, text=True)
    assert helped.returncode == 0 and "--token" in helped.stdout, helped.stderr
