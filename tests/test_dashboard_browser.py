"""The dashboard in real headless Chromium: create, advance, cancel, redeliver, all live."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.receiver import Receiver, Reply

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install -e '.[dev]'")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
KEY = "Xz4ZgayTr7rMgWQrH"
WAIT_S = 20  # an upper bound for DOM conditions, never a sleep


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("no Chromium here: install with: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1440,1100",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """Poll a DOM condition; live updates replace rows, so a stale element just means retry."""
    return WebDriverWait(
        driver, WAIT_S, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    ).until(condition, message=f"timed out waiting for {what}")


def click(driver: WebDriver, selector: str) -> None:
    wait_until(
        driver,
        lambda d: d.find_element(By.CSS_SELECTOR, selector).click() is None,
        f"a click on {selector}",
    )


def text_of(driver: WebDriver, selector: str) -> str:
    found = wait_until(driver, lambda d: d.find_element(By.CSS_SELECTOR, selector).text, selector)
    return str(found)


def css(driver: WebDriver, selector: str) -> list[Any]:
    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def open_dashboard(driver: WebDriver, url: str) -> None:
    driver.get(url)
    wait_until(
        driver,
        lambda d: css(d, "#live[data-state='live']") and css(d, "#create-scenario option"),
        "the dashboard to load scenarios and connect its live stream",
    )
    driver.execute_script("window.__sameDocument = true")  # gone if the page ever reloads


def create_task_via_form(driver: WebDriver, scenario: str, room_id: int) -> str:
    Select(driver.find_element(By.ID, "create-scenario")).select_by_value(scenario)
    room = driver.find_element(By.ID, "create-room")
    room.clear()
    room.send_keys(str(room_id))
    driver.find_element(By.ID, "create-submit").click()
    task_id = wait_until(
        driver,
        lambda d: d.execute_script(
            "const row = [...document.querySelectorAll('#task-rows tr')]"
            "  .find((r) => r.cells[3].textContent === arguments[0]);"
            "return row ? row.dataset.taskId : null;",
            str(room_id),
        ),
        f"a task row for room {room_id}",
    )
    return str(task_id)


def advance_via_form(driver: WebDriver, seconds: int) -> None:
    box = driver.find_element(By.ID, "advance-seconds")
    box.clear()
    box.send_keys(str(seconds))
    driver.find_element(By.ID, "advance-submit").click()


def task_status(driver: WebDriver, task_id: str) -> str | None:
    status = driver.execute_script(
        "const row = document.querySelector(`#task-rows tr[data-task-id='${arguments[0]}']`);"
        "return row ? row.dataset.status : null;",
        task_id,
    )
    return str(status) if status else None


def row_selector(task_id: str) -> str:
    return f"#task-rows tr[data-task-id='{task_id}']"


def test_create_and_advance_from_the_ui_updates_live(
    make_emulator: Any, receiver: Receiver, browser: WebDriver
) -> None:
    emu = make_emulator(callback_url=receiver.url, callback_key=KEY)
    open_dashboard(browser, emu.url + "/ui/")

    task_id = create_task_via_form(browser, "success", 4242)
    task = emu.api("GET", f"/api/tasks/{task_id}").json()
    assert task["scenario"] == "success" and task["room_id"] == 4242
    assert task_status(browser, task_id) == "queued"
    assert css(browser, "#timeline-rows tr"), "the new task is selected and its timeline shown"
    assert css(browser, "#delivery-rows tr") == []

    advance_via_form(browser, 86400)

    wait_until(browser, lambda d: task_status(d, task_id) == "finished", "status finished")
    received = receiver.wait_for_count(len(task["events"]))
    wait_until(
        browser,
        lambda d: len(css(d, "#delivery-rows tr")) == len(received),
        f"{len(received)} delivery rows",
    )
    assert text_of(browser, "#detail-status") == "finished"
    assert "100%" in text_of(browser, row_selector(task_id))
    states = browser.execute_script(
        "return [...document.querySelectorAll('#timeline-rows tr')].map((r) => r.dataset.state)"
    )
    assert set(states) == {"delivered"}
    assert browser.execute_script("return window.__sameDocument") is True


def test_failure_cancel_redeliver_and_callback_url_with_token(
    make_emulator: Any, receiver: Receiver, browser: WebDriver
) -> None:
    emu = make_emulator(callback_url=receiver.url, callback_key=KEY, token="s3cret-token")
    open_dashboard(browser, emu.url + "/ui/?token=s3cret-token")
    assert KEY not in browser.page_source  # the key is shown masked, never in clear

    ok_task = create_task_via_form(browser, "success", 5001)
    failing = create_task_via_form(browser, "transcode-failure", 5002)
    advance_via_form(browser, 86400)
    wait_until(browser, lambda d: task_status(d, failing) == "finished", "failure finished")
    wait_until(browser, lambda d: task_status(d, ok_task) == "finished", "success finished")
    assert "FailedOperation.Transcode" in text_of(browser, row_selector(failing))

    # The backend starts failing; a redelivery from the UI is logged as a failed attempt.
    receiver.respond = lambda request: Reply(status=500, body=b"backend down")
    auth = {"Authorization": "Bearer s3cret-token"}
    logged = emu.api("GET", f"/api/deliveries?task_id={failing}", headers=auth).json()
    before = len(logged["deliveries"])
    click(browser, row_selector(failing))
    wait_until(
        browser,
        lambda d: (
            d.find_element(By.ID, "detail-task-id").text == failing
            and len(css(d, "#delivery-rows tr")) == before
        ),
        "the failed task's deliveries",
    )
    click(browser, "#delivery-rows tr:first-child button.redeliver")
    wait_until(browser, lambda d: len(css(d, "#delivery-rows tr")) == before + 1, "a redelivery")
    assert "500" in text_of(browser, "#delivery-rows tr[data-ok='false']:first-child")
    wait_until(
        browser,
        lambda d: "1 failed attempt" in d.find_element(By.CSS_SELECTOR, row_selector(failing)).text,
        "the refused attempt flagged on the task's row",
    )
    assert "failed attempt" not in text_of(browser, row_selector(ok_task))

    # Cancel a running task from the detail pane.
    pending = create_task_via_form(browser, "slow", 5003)
    wait_until(
        browser, lambda d: d.find_element(By.ID, "detail-task-id").text == pending, "selection"
    )
    click(browser, "#detail-cancel")
    wait_until(browser, lambda d: task_status(d, pending) == "cancelled", "status cancelled")

    # Change where callbacks go.
    url_box = browser.find_element(By.ID, "config-url")
    url_box.clear()
    url_box.send_keys("http://127.0.0.1:9/elsewhere")
    browser.find_element(By.ID, "config-submit").click()
    wait_until(
        browser,
        lambda d: (
            emu.api("GET", "/api/config", headers=auth).json()["callback_url"]
            == "http://127.0.0.1:9/elsewhere"
        ),
        "the callback URL to change",
    )
    assert browser.execute_script("return window.__sameDocument") is True

    screenshot = os.environ.get("TIW_DASHBOARD_SCREENSHOT")
    if screenshot:  # for looking at the layout by eye: TIW_DASHBOARD_SCREENSHOT=/tmp/x.png
        click(browser, row_selector(failing))
        wait_until(
            browser, lambda d: d.find_element(By.ID, "detail-task-id").text == failing, "select"
        )
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1440, max(1100, int(height) + 120))
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(screenshot)
