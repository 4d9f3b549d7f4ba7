"""Load mode: recording tasks' callbacks at a controlled rate, driven by Locust (extra `load`).

`emulator.load.plan` and `emulator.load.summary` import no Locust; `locustfile` (with
`coordination`) is what Locust loads, in its own process.
"""

from __future__ import annotations

from pathlib import Path

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
