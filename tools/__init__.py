"""Host-side tools that never ship in the wheel: the emulated Raspberry Pi check (`make pi-check`) and the check
of the `[edge]`-only wheel (`make wheel-check`). Run from the checkout: `python -m tools.<name>`.
"""
