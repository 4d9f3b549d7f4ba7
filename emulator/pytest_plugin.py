"""pytest plugin (entry point `tiw_emulator`): a session emulator, reset per test, and its helpers.

Loaded in every pytest run once the package is installed, so it imports nothing heavy and
starts nothing until a test asks for one of its fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from emulator.client import EmulatorClient
    from emulator.receiver import Receiver
    from emulator.testing import ServedEmulator, TiwEmulator

INI_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("tiw_emulator_clock", "manual", "emulated clock: manual (tests advance it) or real"),
    ("tiw_emulator_speed", "60", "emulated seconds per wall second when the clock is real"),
    (
        "tiw_emulator_callback_key",
        "tiw-emulator-test-key",
        "key signing callbacks; empty: unsigned",
    ),
    ("tiw_emulator_retry", "fast", "retry policy for failed callbacks: none, fast, tencent"),
    ("tiw_emulator_sdk_app_id", "1400000001", "default SdkAppId"),
    ("tiw_emulator_scenarios_dir", "", "directory of extra scenario files"),
    ("tiw_emulator_timeout", "5", "seconds wait_for helpers wait before failing"),
    (
        "tiw_emulator_seed",
        "",
        "run seed replaying a run exactly (each test starts from it); empty: fresh TaskIds",
    ),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    for name, default, help_text in INI_OPTIONS:
        parser.addini(
            name, help=f"tiw-emulator: {help_text} (default {default!r})", default=default
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "tiw_scenario(name, **params): tasks this test creates without an explicit scenario "
        "(through the control API or the Tencent SDK) get scenario `name`, with per-task params",
    )


def _ini(config: pytest.Config, name: str) -> str:
    return str(config.getini(name)).strip()


@pytest.fixture(scope="session")
def tiw_emulator_settings(pytestconfig: pytest.Config) -> dict[str, Any]:
    """Settings for the session emulator (create_app keys); override this fixture to change them."""
    key = _ini(pytestconfig, "tiw_emulator_callback_key")
    settings: dict[str, Any] = {
        "db": ":memory:",
        "clock": _ini(pytestconfig, "tiw_emulator_clock"),
        "speed": float(_ini(pytestconfig, "tiw_emulator_speed")),
        "retry": _ini(pytestconfig, "tiw_emulator_retry"),
        "callback_key": key or None,
        "sdk_app_id": int(_ini(pytestconfig, "tiw_emulator_sdk_app_id")),
    }
    seed = _ini(pytestconfig, "tiw_emulator_seed")
    if seed:
        settings["seed"] = int(seed)
    scenarios_dir = _ini(pytestconfig, "tiw_emulator_scenarios_dir")
    if scenarios_dir:
        settings["scenarios_dir"] = str(pytestconfig.rootpath / scenarios_dir)
    return settings


@pytest.fixture(scope="session")
def tiw_emulator_server(
    tiw_emulator_settings: dict[str, Any], pytestconfig: pytest.Config
) -> Iterator[ServedEmulator]:
    """One emulator per session (per xdist worker) on a free 127.0.0.1 port, plus its receiver."""
    from emulator.testing import ServedEmulator

    timeout = float(_ini(pytestconfig, "tiw_emulator_timeout"))
    served = ServedEmulator(tiw_emulator_settings, timeout=timeout).start()
    yield served
    served.stop()


@pytest.fixture
def tiw_emulator(
    tiw_emulator_server: ServedEmulator, request: pytest.FixtureRequest
) -> Iterator[TiwEmulator]:
    """The session emulator, reset to a fresh state for this test; fails the test at teardown
    if the server logged an exception meanwhile."""
    tiw_emulator_server.reset()
    handle = tiw_emulator_server.handle()
    marker = request.node.get_closest_marker("tiw_scenario")
    if marker is not None:
        if len(marker.args) != 1 or not isinstance(marker.args[0], str):
            raise pytest.UsageError(
                "use @pytest.mark.tiw_scenario('scenario-name', **params) with one name"
            )
        handle.use_scenario(marker.args[0], **marker.kwargs)
    yield handle
    errors = tiw_emulator_server.errors
    if errors:
        pytest.fail(
            f"the tiw-emulator server raised {len(errors)} error(s) during this test:\n"
            + "\n".join(errors),
            pytrace=False,
        )


@pytest.fixture
def tiw_receiver(tiw_emulator: TiwEmulator) -> Receiver:
    """The recording backend the emulator posts callbacks to by default (cleared per test)."""
    return tiw_emulator.receiver


@pytest.fixture
def tiw_client(tiw_emulator: TiwEmulator) -> EmulatorClient:
    """An EmulatorClient for the reset session emulator."""
    return tiw_emulator.client
