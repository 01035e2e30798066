#!/usr/bin/env bash
# Install digitlite on Raspberry Pi OS Bookworm (64-bit) as a boot-time service.
#
#   sudo edge_app/deploy/install-pi.sh                    # from this checkout (the models come with it)
#   sudo edge_app/deploy/install-pi.sh --from-pypi        # pip install 'digitlite[edge]' from PyPI
#   edge_app/deploy/install-pi.sh --dry-run               # print the steps, change nothing
#
# Steps: apt packages (python3-venv, python3-picamera2), a service user in the video group, a venv
# with --system-site-packages (so apt's picamera2 and libcamera are importable), digitlite[edge] in
# it (the released models are part of the package; --models installs others beside it),
# /etc/digitlite.toml (kept if it exists), the systemd unit, enabled and started, and a final
# `digitlite doctor` (which also checks the model's sha256 against its manifest).
# Safe to run again: each step checks what is already there.
set -euo pipefail

args_given="$*"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

prefix=/opt/digitlite             # venv, README (and --models) live here
service_user=digitlite
config=/etc/digitlite.toml
unit_dir=/etc/systemd/system
source_spec=""                    # what pip installs; default: this checkout if it is one
models_dir=""                     # default: none, the models installed with the package
start=1
camera=1
dry_run=0

usage() {
  cat <<EOF
usage: $0 [options]

  --from-repo DIR     pip install DIR[edge] (default: $repo when it has a pyproject.toml)
  --from-pypi [SPEC]  pip install SPEC from PyPI (default SPEC: 'digitlite[edge]')
  --models DIR        use other models: digits_int8.tflite and manifest.json from DIR, copied to
                      PREFIX/models and named in a new configuration (default: the ones in the package)
  --prefix DIR        install folder (default: $prefix)
  --user NAME         service user, created if missing (default: $service_user)
  --config FILE       configuration file (default: $config; an existing file is kept)
  --no-camera         skip python3-picamera2 (USB webcams, video files and URLs still work)
  --no-start          install and enable the service but do not start it now
  --dry-run           print each step instead of running it
  -h, --help          this text
EOF
}

die() { echo "install-pi: error: $*" >&2; exit 1; }
note() { echo "install-pi: $*"; }
run() {
  if [ "$dry_run" = 1 ]; then echo "+ $*"; else "$@"; fi
}

while [ $# -gt 0 ]; do
  case "$1" in
    --from-repo) [ $# -ge 2 ] || die "--from-repo needs a folder"; source_spec="$(cd "$2" && pwd)[edge]"; shift 2 ;;
    --from-pypi)
      if [ $# -ge 2 ] && [ "${2#-}" = "$2" ]; then source_spec="$2"; shift 2
      else source_spec="digitlite[edge]"; shift; fi ;;
    --models) [ $# -ge 2 ] || die "--models needs a folder"; models_dir="$2"; shift 2 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; prefix="$2"; shift 2 ;;
    --user) [ $# -ge 2 ] || die "--user needs a name"; service_user="$2"; shift 2 ;;
    --config) [ $# -ge 2 ] || die "--config needs a file"; config="$2"; shift 2 ;;
    --no-camera) camera=0; shift ;;
    --no-start) start=0; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'; the valid options are listed above" ;;
  esac
done

if [ -z "$source_spec" ]; then
  [ -f "$repo/pyproject.toml" ] || die "no checkout at $repo; pass --from-repo DIR or --from-pypi"
  source_spec="${repo}[edge]"
fi
venv="$prefix/venv"

# ------------------------------------------------------------------------------------------ checks
if [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
  die "run as root: sudo $0 $args_given"
fi
arch="$(uname -m)"
case "$arch" in
  aarch64|x86_64) ;;
  armv7l|armv6l) die "this is 32-bit Raspberry Pi OS ($arch); LiteRT (ai-edge-litert) ships 64-bit ARM wheels only. Flash Raspberry Pi OS (64-bit) Bookworm and run this again." ;;
  *) note "warning: untested CPU architecture $arch" ;;
esac
command -v python3 >/dev/null || die "python3 not found; install it with: sudo apt-get install python3"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python $(python3 -c 'import platform; print(platform.python_version())') is too old; digitlite needs 3.11 (Raspberry Pi OS Bookworm or newer)"
if [ -n "$models_dir" ]; then
  for f in digits_int8.tflite manifest.json; do
    [ -f "$models_dir/$f" ] || die "$models_dir/$f not found; pass --models DIR with a folder holding digits_int8.tflite and manifest.json (digitlite convert writes both), or leave --models out to use the models installed with digitlite"
  done
fi

# ------------------------------------------------------------------------------------------ apt
packages=(python3-venv)
if [ "$camera" = 1 ]; then
  if apt-cache show python3-picamera2 >/dev/null 2>&1; then
    packages+=(python3-picamera2)
  else
    note "warning: python3-picamera2 is not in this system's apt sources (not Raspberry Pi OS?); the Pi camera module will not work, USB cameras and files will"
    camera=0
  fi
fi
note "apt packages: ${packages[*]}"
run apt-get install -y --no-install-recommends "${packages[@]}"

# ------------------------------------------------------------------------------------------ user
if id "$service_user" >/dev/null 2>&1; then
  note "user $service_user exists; adding it to the video group"
  run usermod -a -G video "$service_user"
else
  note "creating system user $service_user (no login, group video)"
  run useradd --system --user-group --groups video --home-dir /var/lib/digitlite \
    --no-create-home --shell /usr/sbin/nologin "$service_user"
fi

# ------------------------------------------------------------------------------------------ venv
# --system-site-packages: picamera2 and libcamera come from apt and cannot be pip-installed on the Pi.
if [ ! -x "$venv/bin/python" ]; then
  run python3 -m venv --system-site-packages "$venv"
fi
run "$venv/bin/python" -m pip install --quiet --upgrade pip
note "pip install $source_spec"
run "$venv/bin/python" -m pip install --quiet --upgrade "$source_spec"
if [ "$camera" = 1 ]; then
  # apt's simplejpeg (imported by picamera2) is built for Debian's numpy 1.24 and fails to import next
  # to the venv's numpy 2 ("numpy.dtype size changed"); PyPI's simplejpeg is built for numpy 2.
  run "$venv/bin/python" -m pip install --quiet --ignore-installed --no-deps 'simplejpeg>=1.8'
fi

# ------------------------------------------------------------------------------------------ models
# The released models are installed with the package; --models puts others beside the venv.
if [ -n "$models_dir" ]; then
  run install -d -m 0755 "$prefix/models"
  run install -m 0644 "$models_dir/digits_int8.tflite" "$models_dir/manifest.json" "$prefix/models/"
  if [ -f "$models_dir/digits_float32.tflite" ]; then
    run install -m 0644 "$models_dir/digits_float32.tflite" "$prefix/models/"
  fi
fi
if [ -f "$here/README.md" ]; then
  run install -m 0644 "$here/README.md" "$prefix/README.md"
fi

# ------------------------------------------------------------------------------------------ config
if [ -f "$config" ]; then
  note "keeping the existing $config (the example is installed as $config.example)"
  run install -m 0644 "$here/digitlite.toml" "$config.example"
else
  note "writing $config"
  edits=(-e "s|/opt/digitlite/|$prefix/|")
  [ -z "$models_dir" ] || edits+=(-e "s|^# model = |model = |")   # --models: the configuration names them
  if [ "$dry_run" = 1 ]; then
    echo "+ sed ${edits[*]} $here/digitlite.toml > $config"
  else
    sed "${edits[@]}" "$here/digitlite.toml" > "$config"
    chmod 0644 "$config"
  fi
fi

# ------------------------------------------------------------------------------------------ service
unit="$unit_dir/digitlite.service"
note "installing $unit (User=$service_user, $venv/bin/digitlite)"
if [ "$dry_run" = 1 ]; then
  echo "+ sed ... $here/digitlite.service > $unit"
else
  sed -e "s|/opt/digitlite/venv/|$venv/|g" -e "s|/opt/digitlite/README.md|$prefix/README.md|" \
      -e "s|/etc/digitlite.toml|$config|g" \
      -e "s|^User=digitlite$|User=$service_user|" -e "s|^Group=digitlite$|Group=$service_user|" \
      "$here/digitlite.service" > "$unit"
  chmod 0644 "$unit"
fi
run systemctl daemon-reload
run systemctl enable digitlite.service
if [ "$start" = 1 ]; then
  run systemctl restart digitlite.service
fi

# ------------------------------------------------------------------------------------------ doctor
note "checking the device as $service_user:"
if ! run runuser -u "$service_user" -- "$venv/bin/digitlite" doctor --config "$config"; then
  note "digitlite doctor found problems (listed above); fix them, then: sudo systemctl restart digitlite"
  exit 1
fi
note "done. Logs: journalctl -u digitlite -f    Settings: $config    Check: $venv/bin/digitlite doctor"
