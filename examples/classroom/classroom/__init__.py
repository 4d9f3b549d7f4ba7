"""Classroom backend example: records classes with Tencent TIW and tracks the recordings."""

from classroom.app import create_app

__all__ = ["create_app"]
