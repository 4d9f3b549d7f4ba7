"""Make the README's dashboard screenshots in headless Chromium: `make screenshots`.

Starts an emulator and a callback receiver on loopback, plays a few tasks (one refused by the
backend, one failing), then drives Debian's chromium through chromedriver (the tooling of
tests/test_dashboard_browser.py) and saves PNGs under docs/.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from emulator.receiver import Received, Receiver, Reply
from emulator.web.app import create_app, get_emulator
from emulator.web.server import AppServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
KEY = "Xz4ZgayTr7rMgWQrH"
LAPTOP = (1366, 768)
PHONE = (390, 844)


def chromium(width: int, height: int, profile: Path) -> WebDriver:
    """Headless Debian chromium with the given window size (the browser tests' flags)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def wait_for(driver: WebDriver, script: str, what: str) -> Any:
    """Wait until a page script returns something truthy (never a fixed sleep)."""
    return WebDriverWait(driver, 30, poll_frequency=0.05).until(
        lambda d: d.execute_script(script), message=f"timed out waiting for {what}"
    )


def fit_viewport(driver: WebDriver, width: int, height: int) -> None:
    """Size the viewport (not the window) exactly, so screenshots are width x height."""
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    outer = driver.get_window_size()
    driver.set_window_size(width + outer["width"] - inner[0], height + outer["height"] - inner[1])


def play(api: Any, refused_room: int) -> dict[str, str]:
    """Tasks for the pictures: two good, one failing, one whose callbacks the backend refuses."""
    ids = {}
    for name, scenario, room in (
        ("ok", "success", 1253),
        ("failure", "transcode-failure", 1254),
        ("refused", "success", refused_room),
        ("later", "success", 1256),
    ):
        reply = api("POST", "/api/tasks", json={"scenario": scenario, "room_id": room})
        ids[name] = reply.json()["task_id"]
    api("POST", "/api/clock/advance", json={"seconds": 86400})
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args(argv)
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        print(
            "needs Debian's chromium: apt-get install -y chromium chromium-driver", file=sys.stderr
        )
        return 2
    refused_room = 1255

    def respond(request: Received) -> Reply:
        data = request.json.get("EventData", {})
        if data.get("RoomId") == refused_room:
            return Reply(status=500, body=b'{"error": "database is locked"}')
        return Reply()

    with Receiver() as receiver:
        receiver.respond = respond
        app = create_app(
            {
                "db": ":memory:",
                "clock": "manual",
                "retry": "fast",
                "callback_url": receiver.url,
                "callback_key": KEY,
            }
        )
        server = AppServer(app).start()
        http = requests.Session()
        http.trust_env = False

        def api(method: str, path: str, **kwargs: Any) -> Any:
            response = http.request(method, server.url + path, timeout=30, **kwargs)
            response.raise_for_status()
            return response

        profile = args.out / ".chromium-profile"
        try:
            ids = play(api, refused_room)
            driver = chromium(*LAPTOP, profile)
            try:
                fit_viewport(driver, *LAPTOP)
                shots(driver, server.url, ids, args.out)
            finally:
                driver.quit()
        finally:
            server.stop()
            get_emulator(app).close()
            shutil.rmtree(profile, ignore_errors=True)
    return 0


def shots(driver: WebDriver, url: str, ids: dict[str, str], out: Path) -> None:
    # 1. The log with a refused callback open in the detail pane.
    driver.get(f"{url}/ui/")
    wait_for(driver, "return document.querySelector(\"#log-rows tr[data-ok='false']\")", "rows")
    driver.find_element(By.CSS_SELECTOR, "#log-rows tr[data-ok='false'] td").click()
    wait_for(driver, "return !document.getElementById('detail-content').hidden", "detail")
    wait_for(driver, "return document.getElementById('sign-check')", "the sign check")
    driver.save_screenshot(str(out / "dashboard-log.png"))
    # 2. The view of the task whose callbacks were never acknowledged.
    driver.get(f"{url}/ui/?view=tasks&task={ids['refused']}")
    wait_for(driver, "return document.querySelector('#task-view[data-health=unacked]')", "task")
    wait_for(driver, "return document.querySelectorAll('#task-attempts tr').length", "attempts")
    driver.save_screenshot(str(out / "dashboard-task.png"))
    # 3. Phone width: the log filtered to failed attempts.
    fit_viewport(driver, *PHONE)
    driver.get(f"{url}/ui/?ok=false")
    wait_for(driver, "return document.querySelector(\"#log-rows tr[data-ok='false']\")", "rows")
    driver.save_screenshot(str(out / "dashboard-phone.png"))
    for name in ("dashboard-log.png", "dashboard-task.png", "dashboard-phone.png"):
        print(f"{out / name}: {(out / name).stat().st_size // 1024} KiB")


if __name__ == "__main__":
    sys.exit(main())
