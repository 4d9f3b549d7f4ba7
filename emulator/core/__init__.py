"""The core domain: time, scenarios, timelines, payloads, signing and the Emulator service."""
