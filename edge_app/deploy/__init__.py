"""Raspberry Pi deployment: the installer, the systemd unit, the example configuration, and the probe the
emulated aarch64 check runs on the device side (the check itself is host tooling: tools/pi_check.py).

    sudo edge_app/deploy/install-pi.sh     # on the Pi (see edge_app/deploy/README.md)
"""
