"""Raspberry Pi deployment: the installer, the systemd unit, the example configuration and the aarch64 check.

    sudo edge_app/deploy/install-pi.sh     # on the Pi (see edge_app/deploy/README.md)
    python -m edge_app.deploy.pi_check     # on a PC: the emulated aarch64 check (make pi-check)
"""
