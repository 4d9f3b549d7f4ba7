"""Persistence: every SQL statement of the emulator lives in this package."""
