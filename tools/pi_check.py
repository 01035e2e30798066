"""The emulated aarch64 check: the `[edge]` install and `digitlite read` on Raspberry Pi OS's CPU and Python.

What it does, on an x86_64 Debian/Ubuntu host (needs qemu-user-static, debootstrap; see .ci/apt-packages):
1. A minimal arm64 Debian bookworm root file system (Python 3.11, as on Raspberry Pi OS Bookworm):
   `debootstrap --foreign --variant=minbase --include=python3` from the mirror apt uses, then every
   downloaded .deb unpacked with dpkg-deb (much faster than the emulated second stage). Cached as a tarball.
2. aarch64 wheels for `digitlite[edge]`, fetched on the host with `pip download --only-binary=:all:
   --python-version 3.11 --platform manylinux_2_N_aarch64` for N = 17..36 (pip matches tags exactly), cached;
   this checkout built into a wheel and `digitlite[edge]` installed from them with `pip install --target`.
3. The emulated runs: `qemu-aarch64-static -L ROOTFS ROOTFS/usr/bin/python3`, QEMU user mode without
   binfmt_misc, chroot or mounts (nothing to clean up, no root needed once the cache exists). QEMU_CPU is
   set to a Raspberry Pi core (cortex-a72: Pi 4, cortex-a76: Pi 5): QEMU 7.2's default `max` CPU gives wrong
   int8 results. LiteRT's CPU detection crashes on the host's x86 /proc/cpuinfo, so ROOTFS/proc/cpuinfo is a
   Pi's: with -L, QEMU opens ROOTFS/path before /path for every file that exists there.
4. The comparison with the same code on the host: the int8 model's raw outputs on a fixed batch with XNNPACK
   (the default threads, what the device runs) must match within one quantization step; with the built-in kernels every
   prediction must agree (their rounding differs between ARM and x86 by up to ~10 steps, reported);
   `digitlite read --json` on the golden images must give the same numbers (confidences within one step,
   boxes within 2 px: JPEG decoders round differently), the reader running the released region finder and
   recognizer; and `digitlite doctor` must pass inside the emulated system. Functional only: nothing is timed
   against a limit.

Host-side tooling (debootstrap, QEMU): it lives in tools/, outside the packages the wheel installs.

    python -m tools.pi_check                   # make pi-check
    python -m tools.pi_check --cpus cortex-a76 --keep
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

from digitlite import HelpFormatter
from tools.steps import CheckFailed, build_wheel, read_json, run

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "digitlite" / "pi-check"
SUITE = "bookworm"  # Raspberry Pi OS Bookworm = Debian 12
PYTHON_VERSION = "3.11"  # bookworm's python3
ROOTFS_INCLUDE = ("python3",)  # minbase already has libstdc++6 and zlib, all LiteRT and OpenCV's wheels need
MANYLINUX = range(17, 37)  # glibc 2.17 .. 2.36 (bookworm has 2.36)
CPUS = ("cortex-a72", "cortex-a76")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
BATCH_SIZE = 128  # digits in the fixed batch
TIMING_KEYS = re.compile(r"(_ms|_s|latency|elapsed|seconds|fps|time|timestamp)$", re.I)

# /proc/cpuinfo and /proc/device-tree/model of each emulated board, as the real boards print them.
BOARDS = {
    "cortex-a72": {"model": "Raspberry Pi 4 Model B Rev 1.4", "part": "0xd08", "revision": "3",
                   "variant": "0x0", "features": "fp asimd evtstrm crc32 cpuid", "board_revision": "c03114"},
    "cortex-a76": {"model": "Raspberry Pi 5 Model B Rev 1.0", "part": "0xd0b", "revision": "1",
                   "variant": "0x4", "features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
                   "asimdhp cpuid asimdrdm lrcpc dcpop asimddp", "board_revision": "d04170"},
}


def log(message: str) -> None:
    print(f"pi-check: {message}", flush=True)


# ---------------------------------------------------------------------------------------------- host setup


def apt_mirror(suite: str = SUITE, apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt is configured with (deb822 .sources or one-line .list), else deb.debian.org."""
    if os.environ.get("DIGITLITE_DEBIAN_MIRROR"):
        return os.environ["DIGITLITE_DEBIAN_MIRROR"]
    files = sorted(glob.glob(f"{apt_dir}/sources.list.d/*.sources")) + [f"{apt_dir}/sources.list"]
    files += sorted(glob.glob(f"{apt_dir}/sources.list.d/*.list"))
    for name in files:
        try:
            text = Path(name).read_text()
        except OSError:
            continue
        if name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                uris, suites = fields.get("URIs", "").split(), fields.get("Suites", "").split()
                if "deb" in fields.get("Types", "").split() and suite in suites:
                    debian = [u for u in uris if not u.rstrip("/").endswith("-security")]
                    if debian:
                        return debian[0].rstrip("/")
        else:
            for line in text.splitlines():
                parts = re.sub(r"\[.*?\]", "", line).split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == suite:
                    return parts[1].rstrip("/")
    return FALLBACK_MIRROR


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


@contextlib.contextmanager
def cache_lock(cache: Path):
    """One pi-check at a time per cache folder (the cache is built in place)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_rootfs_tarball(cache: Path, mirror: str) -> tuple[Path, bool]:
    """(tarball, built now): the arm64 bookworm minbase + python3 root file system, built once."""
    tarball = cache / f"rootfs-{SUITE}-arm64-{_key(SUITE, ROOTFS_INCLUDE, 'minbase', 'dpkg-deb')}.tar"
    if tarball.is_file():
        return tarball, False
    if os.geteuid() != 0:
        raise CheckFailed(f"building the arm64 root file system ({tarball.name}) needs root for debootstrap; "
                          f"run once as root (sudo make pi-check), later runs use the cached tarball")
    for tool in ("debootstrap", "dpkg-deb"):
        if not shutil.which(tool):
            raise CheckFailed(f"{tool} not found: apt-get install debootstrap (or make system-deps)")
    staging = Path(tempfile.mkdtemp(prefix="rootfs-build-", dir=cache))
    try:
        root = staging / "root"
        log(f"debootstrap --foreign {SUITE} arm64 from {mirror} (first run only; cached afterwards)")
        keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
        cmd = ["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase",
               f"--include={','.join(ROOTFS_INCLUDE)}"]
        cmd += [f"--keyring={keyring}"] if Path(keyring).is_file() else []
        run(cmd + [SUITE, str(root), mirror], "debootstrap (downloading the arm64 packages)")
        debs = sorted((root / "var/cache/apt/archives").glob("*.deb"))
        if not any(d.name.startswith("python3.11_") for d in debs):
            raise CheckFailed(f"debootstrap downloaded {len(debs)} packages but not python3.11; see "
                              f"{root}/debootstrap/debootstrap.log")
        log(f"unpacking {len(debs)} packages with dpkg-deb")
        for deb in debs:
            # --keep-directory-symlink: bookworm is merged-/usr, /lib -> usr/lib must stay a link.
            data = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
            run(["tar", "-C", str(root), "--keep-directory-symlink", "-xf", "-"], f"unpacking {deb.name}",
                stdin=data.stdout)
            if data.wait() != 0:
                raise CheckFailed(f"dpkg-deb could not read {deb}")
        for deb in debs:
            deb.unlink()
        shutil.rmtree(root / "debootstrap", ignore_errors=True)
        if not (root / "usr/bin/python3").exists():
            raise CheckFailed(f"{root}/usr/bin/python3 missing after unpacking")
        partial = staging / "rootfs.tar"
        run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], "packing the root fs")
        partial.rename(tarball)  # atomic: a half-written tarball is never taken for a cached one
        return tarball, True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def edge_requirements() -> list[str]:
    """The `[edge]` extra's requirements, pinned to the versions installed here where there are some.

    Pinning makes both sides run the same LiteRT, numpy and OpenCV releases, so that a difference is the CPU's,
    and keeps the cached wheel folder valid until this machine's versions change.
    """
    with open(REPO / "pyproject.toml", "rb") as f:
        requirements = tomllib.load(f)["project"]["optional-dependencies"]["edge"]
    pinned = []
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(requirement)
    return pinned


def platform_args() -> list[str]:
    args = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for abi in (f"cp{PYTHON_VERSION.replace('.', '')}", "abi3", "none"):
        args += ["--abi", abi]
    for n in MANYLINUX:
        args += ["--platform", f"manylinux_2_{n}_aarch64"]
    return args


def fetch_wheels(cache: Path) -> tuple[Path, bool]:
    """(folder, fetched now): aarch64 wheels of the [edge] requirements and their dependencies."""
    requirements = edge_requirements()
    folder = cache / f"wheels-cp{PYTHON_VERSION.replace('.', '')}-aarch64-{_key(requirements, list(MANYLINUX))}"
    if (folder / ".complete").is_file():
        return folder, False
    log(f"pip download aarch64 wheels: {', '.join(requirements)}")
    shutil.rmtree(folder, ignore_errors=True)
    run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "-d", str(folder),
         *platform_args(), *requirements], "pip download (aarch64 wheels for Python 3.11)")
    (folder / ".complete").write_text("\n".join(requirements) + "\n")
    return folder, True


def install_edge(work: Path, wheels: Path) -> tuple[Path, list[str]]:
    """Build this checkout's wheel and `pip install --target` digitlite[edge] for aarch64; (site, packages)."""
    site = work / "site"
    wheel = build_wheel(work)
    run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
         "--find-links", str(wheels), "--find-links", str(wheel.parent), "--target", str(site), *platform_args(),
         "digitlite[edge]"], "pip install --target digitlite[edge] for aarch64 (from the cached wheels)")
    packages = sorted(p.name.split(".dist-info")[0] for p in site.glob("*.dist-info"))
    return site, packages


def write_board_files(root: Path, cpu: str) -> None:
    """Give the unpacked root fs the /proc/cpuinfo and /proc/device-tree/model of the board with `cpu`."""
    board = BOARDS[cpu]
    proc = root / "proc"
    if proc.is_symlink() or proc.is_file():
        proc.unlink()  # debootstrap leaves proc -> /proc; a real folder lets -L serve our files
    (proc / "device-tree").mkdir(parents=True, exist_ok=True)
    (proc / "device-tree/model").write_bytes(board["model"].encode() + b"\x00")
    cores = os.cpu_count() or 1  # as many as QEMU reports through sysfs and sched_getaffinity
    blocks = [f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {board['features']}\n"
              f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: {board['variant']}\n"
              f"CPU part\t: {board['part']}\nCPU revision\t: {board['revision']}\n" for i in range(cores)]
    tail = f"Revision\t: {board['board_revision']}\nSerial\t\t: 0000000000000000\nModel\t\t: {board['model']}\n"
    (proc / "cpuinfo").write_text("\n".join(blocks) + "\n" + tail)


# ---------------------------------------------------------------------------------------------- inputs


def fixed_batch(size: int = BATCH_SIZE) -> tuple[np.ndarray, str]:
    """(uint8 digits (size, 28, 28), description): MNIST test digits when they are here (an explicit folder or
    the user cache, as `digitlite data --offline` finds them), else seeded strokes only."""
    from digitdata.mnist import MnistError, find_mnist

    half = size // 2
    rng = np.random.default_rng(20240601)
    # Thick random strokes on black: inputs unlike MNIST, so that saturated and mid-range outputs both occur.
    strokes = np.zeros((size, 28, 28), np.uint8)
    for img in strokes:
        for _ in range(3):
            r0, c0, r1, c1 = rng.integers(4, 24, 4)
            for t in np.linspace(0, 1, 40):
                r, c = int(round(r0 + (r1 - r0) * t)), int(round(c0 + (c1 - c0) * t))
                img[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2] = rng.integers(160, 256)
    try:
        digits = find_mnist(offline=True).x_test[:half]
    except MnistError as exc:
        return strokes, f"{size} seeded random strokes (MNIST not found: {exc})"
    return np.concatenate([digits, strokes[: size - half]]), f"{half} MNIST test digits + {size - half} strokes"


def golden_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")) \
        if folder.is_dir() else []


# ---------------------------------------------------------------------------------------------- comparison


def compare_raw(host: dict, target: dict) -> dict:
    """Per setting: the largest |host - target| over the raw integer outputs, and how many elements differ."""
    result = {}
    for name, host_out in host["outputs"].items():
        a = np.asarray(host_out, np.int64)
        b = np.asarray(target["outputs"].get(name, []), np.int64)
        if a.shape != b.shape:
            result[name] = {"error": f"shape {list(b.shape)} on aarch64 vs {list(a.shape)} on x86"}
            continue
        diff = np.abs(a - b)
        result[name] = {"max_abs_diff": int(diff.max()) if diff.size else 0, "elements_differ": int((diff > 0).sum()),
                        "elements": int(diff.size), "argmax_agree": int((a.argmax(-1) == b.argmax(-1)).sum()),
                        "rows": int(a.shape[0]) if a.ndim else 0}
    return result


BOX_PATH = re.compile(r"\.box\[\d\]$")
BOX_TOLERANCE_PX = 2


def compare_json(a: object, b: object, tolerance: float, path: str = "$") -> list[str]:
    """Differences between two JSON values: floats may differ by `tolerance`, timing keys are ignored."""
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = []
        for key in sorted(set(a) | set(b)):
            if TIMING_KEYS.search(str(key)):
                continue
            if key not in a or key not in b:
                diffs.append(f"{path}.{key}: only on {'x86' if key in a else 'aarch64'}")
                continue
            diffs += compare_json(a[key], b[key], tolerance, f"{path}.{key}")
        return diffs
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items on x86, {len(b)} on aarch64"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in compare_json(x, y, tolerance,
                                                                                            f"{path}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool) \
                and abs(a - b) <= tolerance:
            return []
        return [f"{path}: {a!r} on x86, {b!r} on aarch64"]
    if BOX_PATH.search(path) and isinstance(a, int) and isinstance(b, int) and abs(a - b) <= BOX_TOLERANCE_PX:
        return []  # JPEG decoders round differently with ARM and x86 SIMD: a box edge may move by a pixel
    return [] if a == b else [f"{path}: {a!r} on x86, {b!r} on aarch64"]


def max_float_diff(a: object, b: object) -> float:
    """The largest |a - b| over matching float leaves (timing keys ignored), for the report."""
    if isinstance(a, dict) and isinstance(b, dict):
        return max([max_float_diff(a[k], b[k]) for k in a if k in b and not TIMING_KEYS.search(str(k))],
                   default=0.0)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return max([max_float_diff(x, y) for x, y in zip(a, b, strict=True)], default=0.0)
    if isinstance(a, float) and isinstance(b, int | float):
        return abs(a - b)
    return 0.0


# ---------------------------------------------------------------------------------------------- the check


class Emulator:
    """Runs the rootfs's Python 3.11 under qemu-aarch64-static -L, with the installed site folder."""

    def __init__(self, root: Path, site: Path, home: Path, cpu: str):
        self.root, self.cpu = root, cpu
        self.env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home), "PYTHONPATH": str(site),
                    "PYTHONDONTWRITEBYTECODE": "1", "QEMU_CPU": cpu, "DIGITLITE_CONFIG": ""}

    def python(self, args: list[str], what: str, cwd: Path) -> subprocess.CompletedProcess:
        cmd = ["qemu-aarch64-static", "-L", str(self.root), str(self.root / "usr/bin/python3"), *args]
        return run(cmd, f"{what} (aarch64, {self.cpu})", timeout=600, env=self.env, cwd=cwd)


def host_python(args: list[str], what: str, cwd: Path) -> subprocess.CompletedProcess:
    # The packaged models, as in the emulated system: not a model bundle this machine's user has activated.
    env = dict(os.environ, PYTHONPATH=str(REPO), DIGITLITE_CONFIG="", DIGITLITE_MODEL_STORE=str(cwd / "no-bundles"))
    return run([sys.executable, *args], f"{what} (x86 host)", timeout=600, env=env, cwd=cwd)


def check(args: argparse.Namespace) -> dict:
    """Run every step; return the report. Raises CheckFailed with the failing step."""
    timings: dict[str, float] = {}
    report: dict = {"cpus": args.cpus, "host": os.uname().machine}
    start = time.perf_counter()

    model = Path(args.model).resolve()
    manifest = model.parent / "manifest.json"
    if not model.is_file():
        raise CheckFailed(f"model {model} not found: convert one (digitlite convert) or pass --model")
    goldens = golden_images(Path(args.golden))
    if not goldens and not args.no_read:
        raise CheckFailed(f"no golden scene images (*.png, *.jpg) in {args.golden}: pass --golden DIR, or --no-read to "
                          f"check the raw model outputs only")
    if not shutil.which("qemu-aarch64-static"):
        raise CheckFailed("qemu-aarch64-static not found: apt-get install qemu-user-static (or make system-deps)")
    report["qemu"] = run(["qemu-aarch64-static", "--version"], "qemu version").stdout.splitlines()[0]

    cache = Path(args.cache)
    with cache_lock(cache):
        t = time.perf_counter()
        mirror = args.mirror or apt_mirror()
        tarball, built = build_rootfs_tarball(cache, mirror)
        timings["rootfs_s"] = time.perf_counter() - t
        report["rootfs"] = {"tarball": str(tarball), "built_now": built, "mirror": mirror,
                            "mib": round(tarball.stat().st_size / 2**20)}
        t = time.perf_counter()
        wheels, fetched = fetch_wheels(cache)
        timings["wheels_s"] = time.perf_counter() - t
        report["wheels"] = {"folder": str(wheels), "fetched_now": fetched}

    work = Path(tempfile.mkdtemp(prefix="run-", dir=cache))
    report["work"] = str(work)
    try:
        t = time.perf_counter()
        site, packages = install_edge(work, wheels)
        timings["install_s"] = time.perf_counter() - t
        report["installed"] = packages
        log("installed for aarch64: " + ", ".join(packages))

        models = work / "models"
        models.mkdir()
        shutil.copy2(model, models / model.name)
        if manifest.is_file():
            shutil.copy2(manifest, models / "manifest.json")
        model_copy = models / model.name
        reader_models = [model.parent / "regions_int8.tflite", model.parent / "recognizer_int8.tflite"]
        for m in reader_models:
            if not m.is_file():
                raise CheckFailed(f"{m} not found: the reader's released models sit beside --model")
            shutil.copy2(m, models / m.name)
        digits, batch_from = fixed_batch()
        batch = work / "batch.npy"
        np.save(batch, digits)
        report["batch"] = batch_from
        (work / "home").mkdir()
        config = work / "device.toml"
        config.write_text('source = "synthetic"\nheadless = true\n')  # the model installed with the wheel

        probe = ["-m", "edge_app.deploy.pi_probe", "--model", str(model_copy), "--batch", str(batch)]
        read = ["-m", "digitlite", "read", "--json", "--model", str(model_copy), "--regions",
                str(models / reader_models[0].name), "--recognizer", str(models / reader_models[1].name),
                *map(str, goldens)]
        t = time.perf_counter()
        host_python(probe + ["--out", str(work / "probe-x86.json")], "raw outputs", work)
        host_probe = json.loads((work / "probe-x86.json").read_text())
        host_read = None if args.no_read else read_json(host_python(read, "digitlite read", REPO), "read (x86)")
        timings["host_s"] = time.perf_counter() - t
        quant = host_probe["output_quant"]
        step = float(quant["scale"]) if quant["scale"] else 1e-6
        report["output_quant"] = quant
        report["runtime_x86"] = host_probe["runtime"]

        report["runs"] = {}
        problems = []
        root = work / "rootfs"
        root.mkdir()
        run(["tar", "-C", str(root), "-xf", str(tarball)], f"unpacking {tarball.name}")
        for cpu in args.cpus:
            t = time.perf_counter()
            write_board_files(root, cpu)
            emu = Emulator(root, site, work / "home", cpu)
            log(f"emulated {BOARDS[cpu]['model']} ({cpu}): raw outputs, digitlite read, digitlite doctor")
            out = work / f"probe-{cpu}.json"
            emu.python(probe + ["--out", str(out)], "raw outputs", work)
            target_probe = json.loads(out.read_text())
            raw = compare_raw(host_probe, target_probe)
            entry = {"machine": target_probe["machine"], "python": target_probe["python"],
                     "numpy": target_probe["numpy"], "runtime": target_probe["runtime"], "raw": raw}
            for name, r in raw.items():
                # The device runs XNNPACK (the default); that path must match within one step. LiteRT's
                # built-in int8 kernels round differently on ARM and x86 (up to ~10 output steps seen, with
                # every argmax the same): reported, and a failure only if a prediction changes.
                default_path = name.startswith("xnnpack")
                if "error" in r or (default_path and r["max_abs_diff"] > 1) or r["argmax_agree"] != r["rows"]:
                    problems.append(f"{cpu} {name}: raw int8 outputs differ from x86 by more than one "
                                    f"quantization step: {r}")
                elif r["max_abs_diff"] > 1:
                    log(f"  note: {cpu} {name}: built-in kernels differ from x86 by up to {r['max_abs_diff']} "
                        f"steps; all {r['rows']} predictions agree (the device uses XNNPACK)")
            if target_probe["runtime"] != host_probe["runtime"]:
                problems.append(f"{cpu}: runtime {target_probe['runtime']} differs from x86's "
                                f"{host_probe['runtime']}; the comparison needs the same release on both")
            if target_probe["machine"] != "aarch64":
                problems.append(f"{cpu}: the emulated Python reports machine {target_probe['machine']!r}")
            if not args.no_read:
                target_read = read_json(emu.python(read, "digitlite read", work), f"read ({cpu})")
                diffs = compare_json(host_read, target_read, tolerance=step + 1e-6)
                entry["read"] = {"images": len(goldens), "differences": diffs[:20],
                                 "max_float_diff": max_float_diff(host_read, target_read)}
                if diffs:
                    problems.append(f"{cpu} digitlite read: {len(diffs)} difference(s) from x86, first: "
                                    + "; ".join(diffs[:5]))
            doctor = emu.python(["-m", "digitlite", "doctor", "--json", "--config", str(config)],
                                "digitlite doctor", work)
            doc = read_json(doctor, f"doctor ({cpu})")
            entry["doctor"] = {c["name"]: f"{c['status']}: {c['detail']}" for c in doc["checks"]}
            timings[f"emulated_{cpu}_s"] = time.perf_counter() - t
            report["runs"][cpu] = entry
        report["problems"] = problems
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    timings["total_s"] = time.perf_counter() - start
    report["timings"] = {k: round(v, 1) for k, v in timings.items()}
    return report


def summary(report: dict) -> str:
    lines = [f"host {report['host']} vs {report['qemu']} (user mode), batch: {report['batch']}"]
    lines.append(f"rootfs {SUITE} arm64 minbase+python3, {report['rootfs']['mib']} MiB, "
                 f"{'built now' if report['rootfs']['built_now'] else 'cached'}; wheels "
                 f"{'fetched now' if report['wheels']['fetched_now'] else 'cached'}")
    for cpu, run_ in report["runs"].items():
        rt = run_["runtime"]
        lines.append(f"{cpu} ({BOARDS[cpu]['model']}): Python {run_['python']} {run_['machine']}, numpy "
                     f"{run_['numpy']}, {rt['name']} {rt['version']}")
        for name, r in run_["raw"].items():
            if "error" in r:
                lines.append(f"  raw {name}: {r['error']}")
            else:
                lines.append(f"  raw int8 {name}: {r['rows']} digits, max |diff| {r['max_abs_diff']}, "
                             f"{r['elements_differ']}/{r['elements']} elements differ, argmax agrees "
                             f"{r['argmax_agree']}/{r['rows']}")
        if "read" in run_:
            rd = run_["read"]
            lines.append(f"  digitlite read: {rd['images']} golden images, "
                         f"{'identical' if not rd['differences'] else str(len(rd['differences'])) + ' differences'}"
                         f", largest float difference {rd['max_float_diff']:.6f}")
        lines.append("  doctor: " + "; ".join(f"{k} {v.split(':')[0]}" for k, v in run_["doctor"].items()))
    lines.append("time: " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in report["timings"].items()))
    return "\n".join(f"pi-check: {line}" for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.pi_check", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model", default=str(REPO / "models/digits_int8.tflite"), help="the int8 model")
    parser.add_argument("--golden", default=str(REPO / "tests/data/golden"), help="golden scene images (*.png, *.jpg)")
    parser.add_argument("--no-read", action="store_true", help="skip `digitlite read` (raw outputs only)")
    parser.add_argument("--cpus", default=",".join(CPUS), type=lambda s: [c for c in s.split(",") if c],
                        help=f"emulated cores, comma-separated; valid: {', '.join(BOARDS)}")
    parser.add_argument("--cache", default=str(CACHE), help="rootfs tarball and wheel cache")
    parser.add_argument("--mirror", default=None, help="Debian mirror (default: the one apt uses)")
    parser.add_argument("--report", default=str(REPO / "runs/pi-check/report.json"), help="JSON report")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (rootfs copies, site, logs)")
    args = parser.parse_args(argv)
    bad = [c for c in args.cpus if c not in BOARDS]
    if bad or not args.cpus:
        parser.error(f"--cpus {','.join(args.cpus)!r}: valid cores are {', '.join(BOARDS)}")

    # A stop (CI timeout, Ctrl-C) still removes the work folder: SIGTERM becomes SystemExit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        report = check(args)
    except CheckFailed as exc:
        print(f"pi-check: FAILED: {exc}", file=sys.stderr)
        return 1
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    print(summary(report))
    if report["problems"]:
        print("pi-check: FAILED:\n" + "\n".join(f"  - {p}" for p in report["problems"]), file=sys.stderr)
        return 1
    print(f"pi-check: PASS (report: {args.report})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
