"""The dashboard in real headless Chromium: the delivery log, its filters, the detail pane,
redeliver (one and all failed), task health, rules, ad-hoc events and the other QA actions."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from emulator.core.config import DEMO_SECRET_ID, DEMO_SECRET_KEY
from emulator.receiver import Received, Receiver, Reply

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install -e '.[dev]'")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
KEY = "Xz4ZgayTr7rMgWQrH"
WAIT_S = 30  # an upper bound for DOM conditions on a loaded machine, never a sleep
REFUSED_ROOM = 7002


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = "no Chromium here: install with: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
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
        "--window-size=1366,768",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
        # No asset is missing (the favicon included) and no script error happened.
        problems = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not [p for p in problems if "404" in p or "Uncaught" in p], problems
    finally:
        driver.quit()


def wait_until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """Poll a DOM condition; live updates replace rows, so a stale element just means retry."""
    return WebDriverWait(
        driver, WAIT_S, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    ).until(condition, message=f"timed out waiting for {what}")


def css(driver: WebDriver, selector: str) -> list[Any]:
    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def js(driver: WebDriver, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def click(driver: WebDriver, selector: str) -> None:
    wait_until(
        driver,
        lambda d: d.find_element(By.CSS_SELECTOR, selector).click() is None,
        f"a click on {selector}",
    )


def text_of(driver: WebDriver, selector: str) -> str:
    return str(
        wait_until(driver, lambda d: d.find_element(By.CSS_SELECTOR, selector).text, selector)
    )


def fill(driver: WebDriver, element_id: str, value: str) -> None:
    box = driver.find_element(By.ID, element_id)
    box.clear()
    box.send_keys(value)


def accept_confirm(driver: WebDriver) -> str:
    alert = WebDriverWait(driver, WAIT_S).until(expected_conditions.alert_is_present())
    text = str(alert.text)
    alert.accept()
    return text


def open_page(driver: WebDriver, url: str) -> None:
    driver.get(url)
    wait_until(
        driver,
        lambda d: css(d, "#live[data-state='live']") and css(d, "#create-scenario option"),
        "the dashboard to load scenarios and connect its live stream",
    )
    js(driver, "window.__sameDocument = true")  # gone if the page ever reloads


def log_ids(driver: WebDriver) -> list[int]:
    ids = js(
        driver,
        "return [...document.querySelectorAll('#log-rows tr')].map(r => r.dataset.deliveryId)",
    )
    return [int(i) for i in ids]


def url_params(driver: WebDriver) -> dict[str, list[str]]:
    return parse_qs(urlparse(driver.current_url).query)


def refuse_room(room_id: int) -> Callable[[Received], Reply]:
    def respond(request: Received) -> Reply:
        if request.json.get("EventData", {}).get("RoomId") == room_id:
            return Reply(status=500, body=b'{"error": "database is locked"}')
        return Reply()

    return respond


def play_two_tasks(emu: Any) -> tuple[str, str]:
    """A task the backend acknowledges and one whose callbacks it refuses (retries run out)."""
    ok = emu.api("POST", "/api/tasks", json={"scenario": "success", "room_id": 7001}).json()
    refused = emu.api("POST", "/api/tasks", json={"scenario": "success", "room_id": REFUSED_ROOM})
    emu.api("POST", "/api/clock/advance", json={"seconds": 86400})
    return ok["task_id"], refused.json()["task_id"]


def all_deliveries(emu: Any, **filters: Any) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in {"limit": 1000, **filters}.items())
    return list(emu.api("GET", f"/api/deliveries?{query}").json()["deliveries"])


def test_log_across_tasks_is_live_filtered_in_the_url_and_tasks_tell_the_truth(
    make_emulator: Any, receiver: Receiver, browser: WebDriver
) -> None:
    emu = make_emulator(callback_url=receiver.url, callback_key=KEY)
    receiver.respond = refuse_room(REFUSED_ROOM)
    open_page(browser, emu.url + "/ui/")
    assert css(browser, "#log-rows tr") == []

    ok_task, refused_task = play_two_tasks(emu)  # while the page is open: it updates live
    logged = all_deliveries(emu)
    wait_until(browser, lambda d: len(log_ids(d)) == len(logged), f"{len(logged)} log rows")
    assert log_ids(browser) == sorted((d["id"] for d in logged), reverse=True)  # newest first
    rows_text = text_of(browser, "#log-rows")
    assert ok_task in rows_text and refused_task in rows_text  # across tasks
    assert "wall" in rows_text and "emulated" in rows_text  # both time bases, labelled
    failed = [d for d in logged if not d["ok"]]
    assert failed and len(css(browser, "#log-rows tr[data-ok='false']")) == len(failed)

    # Filter on failed attempts: the URL keeps it, and a reload restores it.
    Select(browser.find_element(By.ID, "f-ok")).select_by_value("false")
    wait_until(browser, lambda d: len(log_ids(d)) == len(failed), "only failed rows")
    assert url_params(browser)["ok"] == ["false"]
    assert css(browser, "#log-rows tr[data-ok='true']") == []
    browser.refresh()
    wait_until(browser, lambda d: len(log_ids(d)) == len(failed), "failed rows after reload")
    js(browser, "window.__sameDocument = true")
    assert Select(browser.find_element(By.ID, "f-ok")).first_selected_option.text == "failed"

    # A room (a task-level filter) and a status code.
    click(browser, "#log-clear")
    fill(browser, "f-room", "7001")
    click(browser, "#log-apply")
    ok_attempts = [d for d in logged if d["task_id"] == ok_task]
    wait_until(browser, lambda d: len(log_ids(d)) == len(ok_attempts), "room 7001's rows")
    assert url_params(browser)["room"] == ["7001"]
    click(browser, "#log-clear")
    fill(browser, "f-status_code", "500")
    click(browser, "#log-apply")
    wait_until(browser, lambda d: len(log_ids(d)) == len(failed), "status 500 rows")

    # Task state tells the truth: the refused task looks different, in the list and its view.
    click(browser, "#tab-tasks")
    refused_row = f"#task-rows tr[data-task-id='{refused_task}']"
    ok_row = f"#task-rows tr[data-task-id='{ok_task}']"
    wait_until(browser, lambda d: css(d, refused_row) and css(d, ok_row), "both task rows")
    assert browser.find_element(By.CSS_SELECTOR, refused_row).get_attribute("data-health") == (
        "unacked"
    )
    assert "unacknowledged" in text_of(browser, refused_row)
    assert browser.find_element(By.CSS_SELECTOR, ok_row).get_attribute("data-health") == "ok"
    click(browser, f"{refused_row} td")
    wait_until(browser, lambda d: css(d, "#task-view[data-health='unacked']"), "the task view")
    assert "never acknowledged" in text_of(browser, "#task-banner")
    assert js(browser, "return window.__sameDocument") is True


def test_detail_pane_redeliver_and_redeliver_all_failed(
    make_emulator: Any, receiver: Receiver, browser: WebDriver
) -> None:
    emu = make_emulator(callback_url=receiver.url, callback_key=KEY)
    receiver.respond = refuse_room(REFUSED_ROOM)
    _, refused_task = play_two_tasks(emu)
    failed = all_deliveries(emu, ok="false")
    newest_failed = failed[-1]
    open_page(browser, f"{emu.url}/ui/?ok=false")
    wait_until(browser, lambda d: len(log_ids(d)) == len(failed), "the failed rows")

    # The detail pane: response, Sign check, request headers and body, links.
    click(browser, "#log-rows tr:first-child td")
    pane = "#delivery-detail"
    wait_until(
        browser,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, pane).get_attribute("data-delivery-id")
            == str(newest_failed["id"])
        ),
        "the newest failed attempt in the detail pane",
    )
    assert url_params(browser)["d"] == [str(newest_failed["id"])]
    assert "HTTP 500" in text_of(browser, "#detail-response-status")
    assert "database is locked" in text_of(browser, "#detail-response-body")
    assert "Content-Type" in text_of(browser, "#detail-request-headers")
    assert '"EventType": "OfflineRecordFinished"' in text_of(browser, "#detail-request-body")
    sign = browser.find_element(By.ID, "sign-check")
    assert sign.get_attribute("data-verdict") == "valid"
    masked = emu.api("GET", "/api/config").json()["callback_key"]
    assert "md5(callback key + ExpireTime)" in sign.text and masked in sign.text
    assert KEY not in browser.page_source  # the key only ever masked
    assert text_of(browser, "#detail-task-link") == refused_task

    click(browser, "#detail-curl")
    curl = wait_until(
        browser, lambda d: d.find_element(By.ID, "copy-buffer").get_attribute("value"), "curl"
    )
    assert curl.startswith(f"curl -X POST '{receiver.url}'") and "--data-raw '{" in curl

    # Redeliver one: the backend is back; the new attempt opens, linked to the one it redelivers.
    receiver.respond = lambda request: Reply()
    click(browser, "#detail-redeliver")
    wait_until(
        browser,
        lambda d: (
            css(d, "#detail-original")
            and d.find_element(By.ID, "detail-original").text == f"#{newest_failed['id']}"
        ),
        "the redelivery in the detail pane",
    )
    assert browser.find_element(By.CSS_SELECTOR, pane).get_attribute("data-ok") == "true"
    click(browser, "#detail-original")
    wait_until(
        browser,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, pane).get_attribute("data-delivery-id")
            == str(newest_failed["id"])
        ),
        "back on the original attempt",
    )

    # Redeliver all failed of the filtered view: one per event, confirmed, with progress.
    click(browser, "#tab-log")
    js(browser, "document.getElementById('f-task').value = arguments[0]", refused_task)
    click(browser, "#log-apply")
    events = {d["event_id"] for d in failed}
    receiver.clear()
    click(browser, "#log-bulk")
    question = accept_confirm(browser)
    assert f"Redeliver {len(events)} event(s)" in question
    wait_until(
        browser,
        lambda d: (
            d.find_element(By.ID, "bulk").get_attribute("data-last")
            == f"{len(events)}/{len(events)}/{len(events)}"
        ),
        "every failed event redelivered and acknowledged",
    )
    assert len(receiver.received) == len(events)
    redeliveries = [d for d in all_deliveries(emu) if d["redelivery_of"] is not None]
    assert len(redeliveries) == len(events) + 1 and all(d["ok"] for d in redeliveries)
    assert js(browser, "return window.__sameDocument") is True


def test_qa_actions_from_the_page(
    make_emulator: Any, receiver: Receiver, browser: WebDriver
) -> None:
    emu = make_emulator(callback_url=receiver.url, callback_key=KEY)
    open_page(browser, emu.url + "/ui/?view=actions")

    # A task from a scenario with params, from the form built from the scenario schema.
    Select(browser.find_element(By.ID, "create-scenario")).select_by_value("success")
    click(browser, "#create-params summary")
    fill(browser, "param-duration_s", "600")
    Select(browser.find_element(By.ID, "param-sign")).select_by_value("expired")
    fill(browser, "create-room", "8001")
    click(browser, "#create-submit")
    wait_until(browser, lambda d: css(d, "#task-view[data-status='queued']"), "the new task")
    task_id = text_of(browser, "#task-id")
    task = emu.api("GET", f"/api/tasks/{task_id}").json()
    assert task["params"] == {"duration_s": 600, "sign": "expired"} and task["room_id"] == 8001

    # Cancel it, confirmed.
    click(browser, "#task-cancel")
    assert "Cancel task" in accept_confirm(browser)
    wait_until(browser, lambda d: css(d, "#task-view[data-status='cancelled']"), "cancelled")

    # Rules: add one, see it listed, delete it.
    click(browser, "#tab-actions")
    fill(browser, "rule-room", "9009")
    Select(browser.find_element(By.ID, "rule-scenario")).select_by_value("transcode-failure")
    click(browser, "#rule-submit")
    wait_until(browser, lambda d: len(css(d, "#rule-rows tr")) == 1, "the rule listed")
    rules = emu.api("GET", "/api/rules").json()["rules"]
    assert [(r["match"], r["scenario"]) for r in rules] == [
        ({"room_id": 9009}, "transcode-failure")
    ]
    click(browser, "#rule-rows .rule-delete")
    wait_until(browser, lambda d: css(d, "#rule-rows tr") == [], "the rule deleted")
    assert emu.api("GET", "/api/rules").json()["rules"] == []

    # An ad-hoc event with an expired Sign: sent at once, opened in the log's detail pane.
    Select(browser.find_element(By.ID, "adhoc-sign")).select_by_value("expired")
    click(browser, "#adhoc-submit")
    wait_until(browser, lambda d: css(d, "#sign-check[data-verdict='expired']"), "expired Sign")
    body = receiver.wait_for_count(1)[0].json
    assert body["EventType"] == "OfflineRecordProgressChanged"
    assert body["ExpireTime"] < body["Timestamp"]

    # The clock, the callback URL and key (never shown back), then reset, confirmed.
    click(browser, "#tab-actions")
    fill(browser, "advance-seconds", "120")
    now = emu.api("GET", "/api/clock").json()["now"]
    click(browser, "#advance-submit")
    wait_until(
        browser, lambda d: "Advanced 2m" in d.find_element(By.ID, "advance-result").text, "+2m"
    )
    assert emu.api("GET", "/api/clock").json()["now"] >= now + 120
    fill(browser, "config-url", "http://127.0.0.1:9/elsewhere")
    fill(browser, "config-key", "AnotherKey12345")
    click(browser, "#config-submit")
    wait_until(
        browser,
        lambda d: (
            emu.api("GET", "/api/config").json()["callback_url"] == "http://127.0.0.1:9/elsewhere"
        ),
        "the callback URL saved",
    )
    assert "AnotherKey12345" not in browser.page_source
    assert emu.emu.config().callback_key == "AnotherKey12345"
    click(browser, "#reset-button")
    assert "Reset the emulator" in accept_confirm(browser)
    wait_until(browser, lambda d: emu.api("GET", "/api/tasks").json()["tasks"] == [], "reset")

    assert js(browser, "return window.__sameDocument") is True


def test_cloud_api_call_log_with_filters(
    make_emulator: Any, browser: WebDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)  # the SDK hands HTTP_PROXY to requests itself
    emu = make_emulator()
    task_id = emu.api("POST", "/api/tasks", json={"room_id": 6001}).json()["task_id"]
    endpoint = emu.url.removeprefix("http://")
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=endpoint, protocol="http"))
    sdk = CommonClient(
        "tiw", "2019-09-19", Credential(DEMO_SECRET_ID, DEMO_SECRET_KEY), "ap-guangzhou", profile
    )
    sdk.call_json("DescribeOfflineRecord", {"SdkAppId": 1400000001, "TaskId": task_id})
    with pytest.raises(TencentCloudSDKException):
        sdk.call_json("DescribeOfflineRecord", {"SdkAppId": 1400000001, "TaskId": "no-such-task"})

    open_page(browser, emu.url + "/ui/?view=cloud")
    wait_until(browser, lambda d: len(css(d, "#cloud-rows tr")) == 2, "both calls listed")
    assert len(css(browser, "#cloud-rows tr[data-ok='false']")) == 1
    assert "DescribeOfflineRecord" in text_of(browser, "#cloud-rows")
    fill(browser, "f-c_task", task_id)
    click(browser, "#cloud-filters button[type='submit']")
    wait_until(browser, lambda d: len(css(d, "#cloud-rows tr")) == 1, "the task's call only")
    assert css(browser, "#cloud-rows tr[data-ok='true']")
    assert url_params(browser)["c_task"] == [task_id]


@pytest.mark.parametrize("width", [1366, 390])
def test_page_fits_a_laptop_and_a_phone(
    make_emulator: Any, receiver: Receiver, browser: WebDriver, width: int
) -> None:
    emu = make_emulator(callback_url=receiver.url, callback_key=KEY)
    receiver.respond = refuse_room(REFUSED_ROOM)
    play_two_tasks(emu)
    browser.set_window_size(width, 800)
    for view in ("", "?view=tasks", "?view=actions", "?view=cloud", "?ok=false&d=1"):
        browser.get(f"{emu.url}/ui/{view}")
        wait_until(browser, lambda d: css(d, "body[data-loaded]"), f"the page {view}")
        overflow = js(
            browser,
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        )
        assert overflow <= 0, f"{view or 'log'} scrolls sideways by {overflow}px at {width}px"


def test_log_pages_back_with_the_api_cursor(
    make_emulator: Any, receiver: Receiver, browser: WebDriver
) -> None:
    emu = make_emulator(callback_url=receiver.url, callback_key=KEY)
    for room in range(3001, 3031):
        emu.api("POST", "/api/tasks", json={"scenario": "success", "room_id": room})
    emu.api("POST", "/api/clock/advance", json={"seconds": 86400})
    logged = all_deliveries(emu)
    assert len(logged) > 100  # more than one page
    open_page(browser, emu.url + "/ui/")
    wait_until(browser, lambda d: len(log_ids(d)) == 100, "the first page")
    assert log_ids(browser) == sorted((d["id"] for d in logged), reverse=True)[:100]
    click(browser, "#log-more")
    wait_until(browser, lambda d: len(log_ids(d)) == len(logged), "every attempt, paged back")
    assert log_ids(browser) == sorted((d["id"] for d in logged), reverse=True)
    assert not browser.find_element(By.ID, "log-more").is_displayed()
