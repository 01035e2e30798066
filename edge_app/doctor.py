"""`digitlite doctor`: checks this device and says what to fix.

It reports Python, the LiteRT runtime and its version, the CPU architecture and board model, the cameras it
finds, the configuration file, the model file against its manifest (sha256), whether the configured MQTT broker
accepts the device (its credentials and TLS files), and one inference with the configured XNNPACK threads.
Each problem comes with what to do about it. The exit code is 1 when something
`digitlite run` needs is missing or broken (runtime, model, configuration, the configured camera), else 0.
It never imports TensorFlow.

    digitlite doctor
    digitlite doctor --json --config /etc/digitlite.toml
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.util
import os
import platform
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from digitlite import capture_native_stderr
from edge_app import config as settings
from edge_app import runtime
from edge_app.live.sources import PICAMERA_NAMES

MIN_PYTHON = (3, 11)  # Raspberry Pi OS Bookworm's Python; the code uses tomllib and 3.11 typing
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
VIDEO4LINUX = Path("/sys/class/video4linux")
CPU_GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")

# VIDIOC_QUERYCAP = _IOR('V', 0, struct v4l2_capability): driver[16] card[32] bus_info[32] version
# capabilities device_caps reserved[3], 104 bytes.
VIDIOC_QUERYCAP = 0x80685600
V4L2_CAPABILITY = struct.Struct("16s32s32sIII12x")
V4L2_CAP_VIDEO_CAPTURE = 0x00000001
V4L2_CAP_VIDEO_CAPTURE_MPLANE = 0x00001000
V4L2_CAP_VIDEO_M2M_MPLANE = 0x00004000
V4L2_CAP_VIDEO_M2M = 0x00008000
V4L2_CAP_DEVICE_CAPS = 0x80000000
# Raspberry Pi sensor receivers and ISPs: their /dev/video nodes are driven by libcamera (picamera2).
LIBCAMERA_DRIVERS = ("unicam", "rp1-cfe", "bcm2835-isp", "pispbe", "rpi-hevc-dec", "bcm2835-codec")


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str  # "ok", "info", "warn" (works, but worth fixing) or "fail" (digitlite run will not work)
    detail: str
    fix: str = ""
    data: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- checks


def check_python() -> Check:
    version = platform.python_version()
    data = {"version": version, "executable": sys.executable, "prefix": sys.prefix}
    try:
        import numpy

        data["numpy"] = numpy.__version__
    except ImportError:
        return Check("python", "fail", f"Python {version}, numpy not installed",
                     "pip install 'digitlite[edge]'", data)
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("python", "fail", f"Python {version} ({sys.executable}) is older than 3.11",
                     "use Raspberry Pi OS Bookworm (Python 3.11) or newer, or another Python >= 3.11", data)
    venv = " (venv)" if sys.prefix != sys.base_prefix else ""
    return Check("python", "ok", f"Python {version}{venv}, numpy {data['numpy']}", data=data)


def check_runtime() -> Check:
    try:
        _, _, name, version = runtime.load_runtime()
    except runtime.RuntimeNotFound as exc:
        machine = platform.machine()
        fix = "pip install 'digitlite[edge]' (installs ai-edge-litert)"
        if machine in ("armv7l", "armv6l"):
            fix = "LiteRT has no 32-bit ARM wheels: flash Raspberry Pi OS (64-bit), then " + fix
        return Check("runtime", "fail", f"no LiteRT runtime found ({exc})", fix)
    data = {"name": name, "version": version}
    if name == "tflite_runtime":
        import numpy

        if int(numpy.__version__.split(".")[0]) >= 2:
            return Check("runtime", "warn", f"tflite_runtime {version} with numpy {numpy.__version__}: its "
                         f"wheels are built for numpy 1.x and may fail or crash",
                         "pip install ai-edge-litert (the default runtime; it supports numpy 2)", data)
    return Check("runtime", "ok", f"{name} {version}", data=data)


def check_cpu(threads: int) -> Check:
    machine = platform.machine()
    cores = os.cpu_count() or 1
    data = {"arch": machine, "cores": cores, "threads": threads}
    governor = _read_text(CPU_GOVERNOR)
    if governor:
        data["governor"] = governor
    detail = f"{machine}, {cores} cores" + (f", governor {governor}" if governor else "")
    if machine in ("armv7l", "armv6l"):
        return Check("cpu", "fail", detail + ": 32-bit ARM",
                     "flash Raspberry Pi OS (64-bit); LiteRT's wheels are aarch64 and x86_64 only", data)
    if threads > cores:
        return Check("cpu", "warn", f"{detail}; {threads} interpreter threads is more than the cores",
                     f"set threads = {cores} (or fewer) in the configuration file or --threads", data)
    return Check("cpu", "ok", detail, data=data)


def check_board() -> Check:
    model = _read_text(DEVICE_TREE_MODEL)
    if not model:
        return Check("board", "info", f"not a Raspberry Pi ({DEVICE_TREE_MODEL} not present)")
    return Check("board", "ok", model, data={"model": model})


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\x00", b"").decode(errors="replace").strip()
    except OSError:
        return ""


def list_v4l2_devices(root: Path = VIDEO4LINUX) -> list[dict]:
    """The /dev/video* nodes with their driver, card name and whether they capture video."""
    devices = []
    nodes = sorted(root.glob("video*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 1 << 30)
    for node in nodes:
        dev = Path("/dev") / node.name
        entry = {"device": str(dev), "name": _read_text(node / "name"), "driver": "", "capture": None}
        try:
            fd = os.open(dev, os.O_RDWR | os.O_NONBLOCK)
        except PermissionError:
            entry["error"] = "permission denied"
            devices.append(entry)
            continue
        except OSError as exc:
            entry["error"] = exc.strerror or str(exc)
            devices.append(entry)
            continue
        try:
            buf = fcntl.ioctl(fd, VIDIOC_QUERYCAP, bytes(V4L2_CAPABILITY.size))
            driver, card, _bus, _version, caps, device_caps = V4L2_CAPABILITY.unpack(buf)
            caps = device_caps if caps & V4L2_CAP_DEVICE_CAPS else caps
            entry["driver"] = driver.rstrip(b"\x00").decode(errors="replace")
            entry["name"] = card.rstrip(b"\x00").decode(errors="replace") or entry["name"]
            m2m = caps & (V4L2_CAP_VIDEO_M2M | V4L2_CAP_VIDEO_M2M_MPLANE)
            capture = caps & (V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_VIDEO_CAPTURE_MPLANE)
            entry["capture"] = bool(capture) and not m2m
        except OSError as exc:
            entry["error"] = f"VIDIOC_QUERYCAP failed: {exc.strerror or exc}"
        finally:
            os.close(fd)
        devices.append(entry)
    return devices


def list_picamera2_cameras() -> tuple[list[dict] | None, str]:
    """(cameras, problem): cameras is None when picamera2 cannot be imported; problem says why and the fix."""
    if importlib.util.find_spec("picamera2") is None:
        return None, "picamera2 is not installed"
    try:
        from picamera2 import Picamera2  # imported here only: it starts libcamera
    except Exception as exc:  # noqa: BLE001 - any import failure is reported, not raised
        text = f"{type(exc).__name__}: {exc}"
        if "numpy.dtype size changed" in text or "binary incompatibility" in text:
            return None, (f"picamera2 does not import ({text}): apt's simplejpeg is built for numpy 1.x. "
                          f"Fix: {sys.executable} -m pip install --ignore-installed --no-deps 'simplejpeg>=1.8'")
        if "libcamera" in text:
            return None, (f"picamera2 does not import ({text}): create the venv with --system-site-packages "
                          f"so apt's python3-libcamera is visible, or run edge_app/deploy/install-pi.sh")
        return None, f"picamera2 does not import ({text})"
    try:
        cameras = Picamera2.global_camera_info()
    except Exception as exc:  # noqa: BLE001
        return None, f"picamera2 could not list cameras ({type(exc).__name__}: {exc})"
    return [{k: v for k, v in cam.items() if isinstance(v, str | int | float)} for cam in cameras], ""


def check_cameras(source: str | None, on_pi: bool) -> Check:
    """Cameras found through picamera2 and V4L2; a failure only when the configured source is missing."""
    picams, picam_problem = list_picamera2_cameras()
    v4l2 = list_v4l2_devices()
    usable = [d for d in v4l2 if d.get("capture") and d.get("driver") not in LIBCAMERA_DRIVERS]
    denied = [d["device"] for d in v4l2 if d.get("error") == "permission denied"]
    data = {"picamera2": picams, "v4l2": v4l2, "picamera2_problem": picam_problem}
    found = [f"picamera2: {c.get('Model', '?')} (camera {i})" for i, c in enumerate(picams or [])]
    found += [f"{d['device']}: {d['name']} ({d['driver']})" for d in usable]
    fixes = []
    if denied:
        fixes.append(f"permission denied on {', '.join(denied)}: add the user to the video group "
                     f"(sudo usermod -aG video $USER, then log in again)")
    wanted = _configured_camera(source)
    if picam_problem and (on_pi or wanted == "picamera"):
        if "not installed" in picam_problem:
            picam_problem += ("; on Raspberry Pi OS: sudo apt install python3-picamera2 and use a venv made "
                              "with --system-site-packages")
        fixes.append(picam_problem)
    elif picams == [] and (on_pi or wanted == "picamera"):
        fixes.append("no camera module detected: check the ribbon cable (contacts facing the right way), "
                     "then `rpicam-hello --list-cameras`")

    status = "ok" if found else "warn"
    if wanted == "picamera" and not picams:
        status = "fail"
    elif isinstance(wanted, int) and not any(d["device"] == f"/dev/video{wanted}" and d.get("capture")
                                             for d in v4l2):
        status = "fail"
        fixes.append(f"the configured source {wanted} needs /dev/video{wanted}: plug the camera in, or set "
                     f"source to one of the cameras found, a video file or \"synthetic\"")
    if not found and not fixes:
        fixes.append("none needed to read files (digitlite read); for live reading connect a camera module "
                     "or a USB webcam")
    detail = "; ".join(found) if found else "no camera found"
    if source:
        detail += f" (configured source: {source})"
    return Check("camera", status, detail, "; ".join(fixes), data)


def _configured_camera(source: str | None) -> str | int | None:
    """'picamera', a V4L2 index, or None for files, URLs and synthetic sources."""
    if source is None:
        return None
    if source.lower() in PICAMERA_NAMES:
        return "picamera"
    if source.isdigit():
        return int(source)
    if source.startswith("/dev/video") and source[10:].isdigit():
        return int(source[10:])
    return None


def check_config(path: str | None) -> tuple[Check, dict]:
    """The configuration file's check and its run options ({} when there is none or it is invalid)."""
    chosen = settings.config_path(path)
    if chosen is None:
        return Check("config", "info", f"no configuration file ({settings.DEFAULT_CONFIG} not present); "
                     f"digitlite run uses its defaults"), {}
    try:
        config = settings.load_run_config(chosen)
    except (settings.ConfigError, FileNotFoundError) as exc:
        fix = f"fix {chosen} (example: edge_app/deploy/digitlite.toml)"
        return Check("config", "fail", str(exc), fix), {}
    keys = ", ".join(f"{k}={v}" for k, v in config.items())
    check = Check("config", "ok", f"{chosen}: {keys or 'no keys set'}", data={"path": str(chosen), **config})
    return check, config


def check_mqtt(broker: str | None, config: str | None = None) -> Check:
    """Whether the configured broker accepts this device: one connection with the credentials and TLS files of
    `load_mqtt_auth` (the file's [mqtt], $DIGITLITE_MQTT_*), waiting at most `MqttSettings.check_s`.

    A broker that is away or refuses the device is a warning, not a failure: `digitlite run` keeps reading and
    holds its readings in the outbox meanwhile, and the service runs this check before each start. Credentials
    that cannot be used at all (an empty variable, a missing PEM file) fail, as `digitlite run` refuses them.
    """
    if not broker:
        return Check("mqtt", "info", "no broker configured ([mqtt] broker): readings are not published")
    from edge_app.outputs.mqtt import connect_checked, new_client, parse_broker

    try:
        auth = settings.load_mqtt_auth(config)
        host, port = parse_broker(broker)
        client = new_client(f"digitlite-doctor-{os.getpid()}", settings.MqttSettings(), auth)
    except ImportError as exc:
        return Check("mqtt", "fail", str(exc), "pip install 'digitlite[edge]'")
    except (ValueError, FileNotFoundError) as exc:  # ConfigError included
        return Check("mqtt", "fail", str(exc), "fix [mqtt] in the configuration file (example: "
                     "edge_app/deploy/digitlite.toml) or the $DIGITLITE_MQTT_* variables")
    data = {"broker": f"{host}:{port}", "username": auth.username, "tls": auth.uses_tls}
    try:
        connect_checked(client, host, port, auth)
    except ConnectionError as exc:
        return Check("mqtt", "warn", str(exc), "until it is fixed, readings wait in the outbox on this device", data)
    client.disconnect()
    client.loop_stop()
    detail = f"the broker {host}:{port} accepts this device ({auth.describe()})"
    exposed = _password_exposed(config)
    if exposed:
        return Check("mqtt", "warn", f"{detail}; but {exposed} holds the MQTT password and every user can read it",
                     f"sudo chmod 0640 {exposed} && sudo chgrp digitlite {exposed} (the service's group), or keep "
                     f"the password in ${settings.MQTT_AUTH_ENV['password']} (a systemd EnvironmentFile, mode "
                     f"0600)", data)
    return Check("mqtt", "ok", detail, data=data)


def _password_exposed(config: str | None) -> Path | None:
    """The configuration file, when it holds the MQTT password and others may read it."""
    chosen = settings.config_path(config)
    if chosen is None or "mqtt.password" not in settings.load_config(chosen):
        return None
    return chosen if chosen.stat().st_mode & 0o004 else None


def check_model(model: Path, manifest: Path | None = None, allow_unverified: bool = False,
                name: str = "model") -> Check:
    """The model file exists, is a TFLite flatbuffer, and matches its manifest entry's sha256
    (`runtime.model_integrity`, what `digitlite run` verifies before loading it). A model it cannot verify fails,
    as `digitlite run` refuses it, unless the configuration allows it (`allow_unverified = true`): then a warning.
    `name` is the check's name: "model" (the classifier), "regions" or "recognizer" (the reader's models)."""
    data = {"path": str(model)}
    try:
        content = runtime.check_tflite_file(model)
    except runtime.ModelError as exc:
        return Check(name, "fail", str(exc), "reinstall digitlite to restore the model installed with it "
                     "(pip install --force-reinstall 'digitlite[edge]'), or name an existing one: model = "
                     "\"...\" in the configuration file, or --model", data)
    data["bytes"] = len(content)
    manifest_path = manifest or model.parent / runtime.MANIFEST_NAME
    data["manifest"] = str(manifest_path)
    try:
        integrity = runtime.model_integrity(model, manifest_path, content)
    except runtime.ModelError as exc:
        return Check(name, "fail", str(exc),
                     f"copy manifest.json again from the release beside {model.name}", data)
    data["sha256"] = digest = integrity.sha256
    status = "warn" if allow_unverified else "fail"
    allowed = ("; used anyway: allow_unverified = true" if allow_unverified else
               "; `digitlite run` refuses it (allow_unverified = true in the configuration uses it anyway)")
    if integrity.status == "no manifest":
        return Check(name, status, f"{model} ({data['bytes']} bytes), no {manifest_path.name} beside it: "
                     f"cannot verify it{allowed}", f"copy manifest.json from the release to {model.parent}", data)
    if integrity.status == "no entry":
        return Check(name, status, f"{integrity.problem()}{allowed}",
                     "use the manifest.json released with this model (or regenerate it with `digitlite convert`)",
                     data)
    if integrity.status == "mismatch":
        return Check(name, status, f"{model}: sha256 {digest[:12]}... does not match the manifest "
                     f"({integrity.expected[:12]}...); the file is corrupt or from another release{allowed}",
                     f"copy digits_int8.tflite and manifest.json again from the same release to "
                     f"{model.parent}", data)
    entry = runtime.find_manifest_entry(model, manifest_path)
    extra = ""
    for key in ("accuracy", "test_accuracy"):
        if isinstance(entry.get(key), int | float):
            extra = f", MNIST test accuracy {entry[key]:.4f}"
            break
    return Check(name, "ok", f"{model} (sha256 {digest[:12]}... matches the manifest{extra})", data=data)


def check_inference(model: Path, threads: int) -> Check:
    """Build the interpreter with `threads` XNNPACK threads and time one inference on a blank digit."""
    import numpy as np

    try:
        with capture_native_stderr() as native_log:
            clf = runtime.Classifier(model, threads=threads)
            x = clf.pixels_to_input(np.zeros((1, 28, 28), np.uint8))
            clf.raw_output(x)  # the first invoke prepares XNNPACK's packed weights
            start = time.perf_counter()
            clf.raw_output(x)
            latency_ms = (time.perf_counter() - start) * 1000
    except (runtime.ModelError, runtime.RuntimeNotFound, ValueError) as exc:
        return Check("inference", "fail", str(exc), "use a digitlite .tflite model (digitlite convert) and "
                     "pip install 'digitlite[edge]'")
    xnnpack = any("XNNPACK" in line for line in native_log)
    data = {"threads": threads, "xnnpack_delegate": xnnpack, "latency_ms": round(latency_ms, 3),
            "input": clf.info.input_dtype, "runtime": asdict(clf.runtime)}
    delegate = "XNNPACK delegate applied" if xnnpack else "XNNPACK delegate not reported by the runtime"
    return Check("inference", "ok", f"{threads} threads, {delegate}, {clf.info.input_dtype} input, one digit "
                 f"in {latency_ms:.2f} ms", data=data)


# ---------------------------------------------------------------------------------------------- report


def run_checks(model: str | None = None, config: str | None = None,
               threads: int | None = None) -> list[Check]:
    """Every check, in report order.

    Args:
        model: the .tflite to check; default: the configuration's `model`, else the active model bundle's, else
            the int8 model installed with digitlite (what `digitlite run` would load; likewise the region finder
            and the recognizer).
        config: the configuration file; default: $DIGITLITE_CONFIG, else /etc/digitlite.toml when present.
        threads: interpreter threads; default: the configuration's `threads`, else runtime.DEFAULT_THREADS.
    """
    from edge_app.config import ReaderOptions
    from edge_app.wiring import model_source

    config_check, run_config = check_config(config)
    paths, bundle = model_source(ReaderOptions(model=model or run_config.get("model"),
                                               regions=run_config.get("regions"),
                                               recognizer=run_config.get("recognizer")))
    model_path = paths["model"]
    threads = int(threads or run_config.get("threads") or runtime.DEFAULT_THREADS)
    board = check_board()
    checks = [check_python(), check_runtime(), check_cpu(threads), board, config_check,
              check_cameras(run_config.get("source"), on_pi="Raspberry Pi" in board.data.get("model", "")),
              check_model(model_path, allow_unverified=bool(run_config.get("allow_unverified")))]
    model_check = checks[-1]
    for name in ("regions", "recognizer"):
        checks.append(check_model(paths[name], name=name, allow_unverified=bool(run_config.get("allow_unverified"))))
    checks.append(check_bundle(bundle))
    if config_check.status != "fail":
        checks.append(check_mqtt(run_config.get("mqtt"), config))
    if checks[1].status != "fail" and model_check.status != "fail":
        checks.append(check_inference(model_path, threads))
    else:
        checks.append(Check("inference", "info", "skipped: needs the runtime and the model (see above)"))
    return checks


def check_bundle(bundle: str | None) -> Check:
    """Which model bundle `digitlite run` loads (`digitlite models`), and what the last update did."""
    from edge_app.store.models import ModelStore

    store = ModelStore()
    last = store.last_update()
    data = {"store": str(store.root), "bundle": bundle, "last_update": last}
    detail = f"model bundle {bundle} (in {store.root})" if bundle else "no bundle active: the models installed with " \
                                                                       "digitlite"
    if last:
        detail += f"; last update: {last['version'] or 'packaged models'} {last['outcome']} at {last['time']}"
    return Check("bundle", "info", detail, data=data)


MARKS = {"ok": " ok ", "info": "info", "warn": "warn", "fail": "FAIL"}


def format_report(checks: list[Check], quiet: bool = False) -> str:
    lines = []
    for c in checks:
        if quiet and c.status in ("ok", "info"):
            continue
        lines.append(f"[{MARKS[c.status]}] {c.name:<9} {c.detail}")
        if c.fix:
            lines.append(f"       {'':<9} -> {c.fix}")
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        lines.append("")
        lines.append(f"{len(failed)} problem(s) stop `digitlite run`:")
        lines += [f"  - {c.name}: {c.detail}" for c in failed]
    elif not quiet:
        warned = sum(c.status == "warn" for c in checks)
        lines.append("")
        lines.append("ready" + (f" ({warned} warning(s) above)" if warned else ""))
    return "\n".join(lines)
