"""The tiw-emulator command line: serve, demo and the QA tools."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tiw-emulator` console script."""
    from emulator.cli.commands import main as _main

    return _main(argv)
