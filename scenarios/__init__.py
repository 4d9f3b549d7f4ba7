"""The built-in scenario catalogue, installed as the data package `emulator.builtin_scenarios`.

This folder is the editable source; pyproject.toml maps it into the package so the wheel, the
sdist and an editable install all carry it. Only the *.yaml files here are scenarios.
"""
