"""The console (``GET /console``) in a real browser, Debian's Chromium driven by Selenium,
against a real worker fed five months of simulated shops, a defined segment and an
experiment.

Every panel draws the shop's data: each chart's data is what the JSON API answers, its
canvas has pixels drawn, each table's cells are the API's figures; the browser logs no
error (a 404 of a route this worker may not serve yet, ``/shops``, flows or customer
search, is the one thing it may log, and only when the worker does answer 404 there). An
unknown token sees a clear message and nothing else; a shop's token sees its shop and
nothing of another. The worker keeps the default request rate per token, so the page is
shown to stay within it. Screenshots are kept under ``var/artifacts/console/`` (printed).

Chromium and chromedriver come from Debian (``apt-get install chromium
chromium-driver``); without them the tests fail saying so. Selenium is given the driver's
path, so Selenium Manager downloads nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, Literal, cast

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from harness.workers import (
    PLATFORM_TOKEN,
    REPO_ROOT,
    SHOP_TOKENS,
    WorkerProcess,
    isolated_settings,
    until,
)
from segstream.api.access import token_hash
from segstream.settings import Settings
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import publish
from segstream.tools.simulation.generator import Simulation, SimulationConfig, generate
from tests.api_fuzz import DEFINITION, REPLAY_ENV, SHOP

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO_ROOT / "var" / "artifacts" / "console"
DOWNLOADS = ARTIFACTS / "downloads"
"""Where the browser saves the files the page downloads (the CSV exports)."""
READER = "sst_console-test-reader"
"""The token the test reads the API with to know what the page should show: a bucket of
its own, so the page's requests alone meet the rate limit."""
(SHOP_TOKEN,) = SHOP_TOKENS
TRANSITIONAL = ("idle", "loading")
PANELS = ("segments", "flows", "metrics", "cohorts", "journey", "definitions", "experiments")
OPTIONAL_ROUTE = re.compile(r"/shops|/shops/[^/?]+/(flows|customers)\?.*")
"""Routes added on main meanwhile (the shop list, flows, customer search): the page falls
back when a worker answers 404 there."""
EXPERIMENT = {
    "experiment_id": "welcome-call",
    "name": "A welcome call for active subscribers",
    "model": "lifecycle",
    "segment": "active",
    "arms": [{"name": "holdout", "share": 0.5}, {"name": "call", "share": 0.5}],
    "starts_at": "2025-06-01T00:00:00Z",
}
"""Started before the history is sent, so customers enrol as they become active: both arms
get members and the read-out has intervals to draw."""
SETTLE_S = 30.0
"""Bound on a panel's drawing (it takes about a second): a bound, not a wait for luck."""


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "console")


@pytest.fixture(scope="module")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker at the default request rate, the coffee roaster's defined segment (the
    contract run's) and experiment, then five months of the simulated shops."""
    asyncio.run(ensure_topics(settings))
    tokens = {PLATFORM_TOKEN: "platform", READER: "platform", **SHOP_TOKENS}
    env = {
        **REPLAY_ENV,
        "SEGSTREAM_API_RATE_PER_S": str(Settings.model_fields["api_rate_per_s"].default),
        "SEGSTREAM_API_BURST": str(Settings.model_fields["api_burst"].default),
        "SEGSTREAM_API_TOKENS": json.dumps({token_hash(t): s for t, s in tokens.items()}),
    }
    started = WorkerProcess.for_settings(settings, tmp_path_factory.mktemp("console") / "w", env)
    started.start()
    try:
        started.wait_ready(timeout_s=60)
        for path, body in (("definitions", DEFINITION), ("experiments", EXPERIMENT)):
            status, answer = started.request_json("POST", f"/shops/{SHOP}/{path}", body)
            assert status == 201, (path, status, answer)
        asyncio.run(publish(simulation().outbox(), settings))
        wait_handled(started, len(simulation().events))
        yield started
    finally:
        started.stop()


def simulation() -> Simulation:
    """Six shops, 40 customers each with the touchpoints before their signup (and
    prospects), June to October 2025."""
    config = SimulationConfig(
        seed=5,
        shops_per_kind=1,
        customers_per_shop=40,
        start=date(2025, 6, 1),
        days=150,
        touchpoints=True,
    )
    return generate(config)


def wait_handled(worker: WorkerProcess, expected: int) -> None:
    until(lambda: worker.events_handled() or 0, lambda n: n >= expected, "events handled", 60)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium through Debian's chromedriver, its console log kept."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        pytest.fail(
            f"the console test needs Debian's Chromium: {', '.join(missing)} missing "
            "(apt-get install chromium chromium-driver; .ci/run installs them)",
            pytrace=False,
        )
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    for old in DOWNLOADS.iterdir():
        old.unlink()
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(DOWNLOADS)}
    )
    try:
        yield driver
    finally:
        driver.quit()


# ---------------------------------------------------------------- page helpers


def open_console(browser: WebDriver, worker: WorkerProcess, fragment: str) -> None:
    """Load the console with ``fragment`` in a tab whose sessionStorage (where the page
    keeps a token) is cleared first, on a file of the same origin that runs nothing."""
    browser.get(worker.url("/console/console.css"))
    browser.execute_script("sessionStorage.clear()")
    browser_log(browser)  # forget what earlier pages logged
    browser.get(worker.url(f"/console#{fragment}"))


def settled(browser: WebDriver, panels: tuple[str, ...] = PANELS) -> dict[str, str]:
    """Each panel's final state (ready, empty or error), once none is drawing."""

    def states(driver: WebDriver) -> dict[str, str] | Literal[False]:
        found = {name: panel(driver, name).get_attribute("data-state") or "" for name in panels}
        return False if any(state in TRANSITIONAL for state in found.values()) else found

    result: dict[str, str] = WebDriverWait(browser, SETTLE_S, 0.1).until(
        states, f"panels still drawing after {SETTLE_S} s"
    )
    return result


def panel(browser: WebDriver, name: str) -> Any:
    return browser.find_element(By.ID, f"panel-{name}")


def chart_data(browser: WebDriver, canvas_id: str) -> Any:
    """The labels and datasets' data of the Chart.js chart on ``canvas_id``."""
    return browser.execute_script(
        "const c = Chart.getChart(arguments[0]);"
        "return c ? {labels: c.data.labels, data: c.data.datasets.map(d => d.data)} : null;",
        canvas_id,
    )


def painted(browser: WebDriver, canvas_id: str) -> int:
    """How many pixels of the canvas are not transparent (0: nothing drawn)."""
    count: int = browser.execute_script(
        "const c = document.getElementById(arguments[0]);"
        "const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i]) n++; return n;",
        canvas_id,
    )
    return count


def cells(browser: WebDriver, name: str, table: int | None = None) -> list[list[str]]:
    """The text of every row (header rows included) of the tables in a panel's body, or of
    its ``table``-th one."""
    rows: list[list[str]] = browser.execute_script(
        "const tables = [...document.querySelectorAll("
        "  `#panel-${arguments[0]} [data-role=body] table`)];"
        "const chosen = arguments[1] === null ? tables : [tables[arguments[1]]];"
        "return chosen.flatMap(t => [...t.rows].map(r => [...r.cells].map(c => c.textContent)));",
        name,
        table,
    )
    return rows


def browser_log(browser: WebDriver) -> list[dict[str, Any]]:
    """The browser's console entries since the last call."""
    return cast(list[dict[str, Any]], browser.get_log("browser"))  # type: ignore[no-untyped-call]


def errors(browser: WebDriver, worker: WorkerProcess, allowed: tuple[int, ...] = ()) -> list[str]:
    """The browser's error log entries, but for the statuses ``allowed`` (a refused
    token's) and a 404 of a route this worker does not serve yet (:data:`OPTIONAL_ROUTE`,
    asked again here)."""
    found = []
    for entry in browser_log(browser):
        message = str(entry["message"])
        if entry["level"] != "SEVERE" or any(f"status of {s} " in message for s in allowed):
            continue
        path = message.split(" ", 1)[0].removeprefix(worker.url(""))
        if "status of 404 " in message and OPTIONAL_ROUTE.fullmatch(path) and absent(worker, path):
            continue
        found.append(message)
    return found


def absent(worker: WorkerProcess, path: str) -> bool:
    """Whether the worker answers 404 to ``path`` (a route it does not serve yet)."""
    status, _ = worker.get_json(path, token=READER)
    return status == 404


def screenshot(browser: WebDriver, name: str) -> Path:
    """The whole page as a PNG under :data:`ARTIFACTS` (the window made as tall as it)."""
    for _ in range(2):  # the window's frame takes some of its height from the page
        missing = browser.execute_script(
            "return document.documentElement.scrollHeight - window.innerHeight"
        )
        browser.set_window_size(1400, browser.get_window_size()["height"] + max(0, int(missing)))
    browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    assert browser.save_screenshot(str(path)), path
    print(f"console screenshot: {path}")
    browser.set_window_size(1400, 1000)
    return path


def read(worker: WorkerProcess, path: str) -> Any:
    status, answer = worker.get_json(path, token=READER)
    assert status == 200, (path, status, answer)
    return answer


# ---------------------------------------------------------------- the tests


def test_the_page_and_its_files_are_served_and_nothing_else(worker: WorkerProcess) -> None:
    with urllib.request.urlopen(worker.url("/console"), timeout=5) as page:
        assert page.headers.get_content_type() == "text/html"
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert b"console/console.js" in page.read()
    for name in ("console.js", "console.css", "chart.umd.min.js"):
        with urllib.request.urlopen(worker.url(f"/console/{name}"), timeout=5) as asset:
            assert asset.status == 200 and asset.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/console/VENDORED.md", "/console/..%2Fconsole.py", "/console/%2e%2e%2fapi"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(worker.url(path), timeout=5)
        assert refused.value.code == 404, path
        assert json.loads(refused.value.read())["error"] == "not_found", path


def test_every_panel_draws_the_shops_data_without_an_error(
    browser: WebDriver, worker: WorkerProcess
) -> None:
    open_console(browser, worker, f"token={PLATFORM_TOKEN}&shop={SHOP}")
    states = settled(browser)
    assert browser.current_url == worker.url("/console"), "the token stays in the URL"
    sizes = read(worker, f"/shops/{SHOP}/segments")
    flows_ok = check_flows(browser, worker, states["flows"], sizes)
    check_segments(browser, worker, sizes)
    check_metrics(browser, worker, sizes["as_of"])
    check_cohorts_and_journey(browser, worker)
    check_definitions_and_experiments(browser, worker)
    check_customer_lookup(browser, worker, sizes)
    check_csv_download(browser, worker, sizes)
    shot = screenshot(browser, "console-platform-token")
    assert states == {**dict.fromkeys(PANELS, "ready"), "flows": flows_ok}, states
    assert errors(browser, worker) == []
    assert shot.stat().st_size > 50_000
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert len(loaded) > 20 and not [u for u in loaded if not u.startswith(worker.url("/"))]


def check_segments(browser: WebDriver, worker: WorkerProcess, sizes: dict[str, Any]) -> None:
    lifecycle = sizes["models"]["lifecycle"]
    drawn = chart_data(browser, "chart-segments")
    assert drawn == {"labels": list(lifecycle), "data": [list(lifecycle.values())]}
    trend = chart_data(browser, "chart-segment-trend")
    assert len(trend["data"]) == len(lifecycle) and len(trend["labels"]) == 6
    last = trend["labels"][-1]
    flows = read(worker, f"/shops/{SHOP}/flows?model=lifecycle&grain=month&start={last}-01")
    for segment, series in zip(lifecycle, trend["data"], strict=True):
        assert series[-1] == lifecycle[segment], segment  # the month in progress: now
        net = flows["entered"].get(segment, 0) - flows["left"].get(segment, 0)
        assert series[-2] == lifecycle[segment] - net, segment  # the month before's end
    assert painted(browser, "chart-segments") > 1000
    assert painted(browser, "chart-segment-trend") > 1000


def check_csv_download(browser: WebDriver, worker: WorkerProcess, sizes: dict[str, Any]) -> None:
    """The largest lifecycle segment's "Download CSV" saves the file the API exports."""
    lifecycle = sizes["models"]["lifecycle"]
    segment = max(lifecycle, key=lifecycle.__getitem__)
    button = panel(browser, "segments").find_element(
        By.CSS_SELECTOR, f'button[data-segment="{segment}"]'
    )
    button.click()
    saved = DOWNLOADS / f"{SHOP}-lifecycle-{segment}.csv"
    WebDriverWait(browser, 20).until(lambda _: saved.is_file() and saved.stat().st_size > 0)
    path = f"/shops/{SHOP}/segments/lifecycle/{segment}/members.csv"
    status, kind, exported = worker.request("GET", path, token=READER)
    assert (status, kind) == (200, "text/csv")
    assert saved.read_bytes() == exported
    assert exported.count(b"\r\n") == lifecycle[segment] + 1  # the header and every member


def check_flows(browser: WebDriver, worker: WorkerProcess, state: str, sizes: Any) -> str:
    """The flow matrix when the worker serves flows, else the empty state; the state
    expected."""
    start = sizes["as_of"][:7] + "-01"
    status, flows = worker.get_json(
        f"/shops/{SHOP}/flows?model=lifecycle&grain=month&start={start}", token=READER
    )
    text = panel(browser, "flows").text
    if status == 404:
        assert state == "empty" and "No flows for lifecycle, month from" in text
        return "empty"
    assert status == 200, flows
    assert_flows(browser, flows)
    return "ready" if flows["flows"] else "empty"


def assert_flows(browser: WebDriver, flows: dict[str, Any]) -> None:
    """The flows panel shows ``flows``: each count in its row (from) and column (to), each
    segment's entered and left."""
    matrix, moves = cells(browser, "flows", 0), cells(browser, "flows", 1)
    shown = {(r[0], to): r[i + 1] for r in matrix[1:] for i, to in enumerate(matrix[0][1:])}
    expected = {
        (f["from"] or "(none)", f["to"] or "(none)"): f["customers"] for f in flows["flows"]
    }
    assert {key: int(n) for key, n in shown.items() if n} == expected
    assert moves[0] == ["segment", "entered", "left"]
    segments = sorted({*flows["entered"], *flows["left"]})
    assert moves[1:] == [
        [s, str(flows["entered"].get(s, 0)), str(flows["left"].get(s, 0))] for s in segments
    ]


def check_metrics(browser: WebDriver, worker: WorkerProcess, as_of: str) -> None:
    rates = chart_data(browser, "chart-rates")
    assert len(rates["labels"]) == 6
    month = rates["labels"][-2]  # the last complete month
    window = read(worker, f"/shops/{SHOP}/metrics?grain=month&start={month}-01")
    assert rates["data"][0][-2] == pytest.approx(100 * window["rates"]["churn"])
    assert rates["data"][1][-2] == pytest.approx(100 * window["rates"]["retention"])
    mrr = chart_data(browser, "chart-mrr")
    assert mrr["data"][0][-2] == pytest.approx(window["mrr"]["end"])
    row = next(r for r in cells(browser, "metrics") if r[0] == month)
    assert row[1:3] == [str(window["subscribers"]["start"]), str(window["subscribers"]["end"])]
    assert painted(browser, "chart-rates") > 1000 and painted(browser, "chart-mrr") > 1000


def check_cohorts_and_journey(browser: WebDriver, worker: WorkerProcess) -> None:
    table = read(worker, f"/shops/{SHOP}/cohorts?months=12")
    signed_up = [cohort for cohort in table["cohorts"] if cohort["customers"]]
    rows = cells(browser, "cohorts")
    assert len(rows) == 1 + len(signed_up) > 2
    for row, cohort in zip(rows[1:], signed_up, strict=True):
        assert row[:2] == [cohort["cohort"], str(cohort["customers"])]
        shown = [share(text) for text in row[2 : 2 + len(cohort["months"])]]
        assert shown == [approx_share(m["retention"]) for m in cohort["months"]]
    funnel = read(worker, f"/shops/{SHOP}/journey?months=12")["funnel"]["stages"]
    drawn = chart_data(browser, "chart-journey")
    assert drawn["data"] == [[stage["customers"] for stage in funnel]]
    assert funnel[0]["customers"] > 0 and painted(browser, "chart-journey") > 1000


def share(text: str) -> float | None:
    """A share the page shows as ``"84.6 %"`` (a dash: none)."""
    return None if text == "\u2013" else float(text.removesuffix(" %")) / 100


def approx_share(value: float | None) -> Any:
    """``value`` as the page's one decimal of a percentage may show it."""
    return None if value is None else pytest.approx(value, abs=0.0005 + 1e-12)


def check_definitions_and_experiments(browser: WebDriver, worker: WorkerProcess) -> None:
    (defined,) = read(worker, f"/shops/{SHOP}/definitions")["definitions"]
    row = cells(browser, "definitions")[1]
    assert row[0] == DEFINITION["segment_id"] and row[3] == str(defined["members"])
    (readout,) = read(worker, f"/shops/{SHOP}/experiments")["experiments"]
    arms = {row[0]: row[1] for row in cells(browser, "experiments")[1:]}
    assert arms == {arm: str(f["members"]) for arm, f in readout["arms"].items()}
    churn = readout["comparisons"]["call"]["churn"]
    assert churn is not None, "the experiment's read-out has no interval to draw"
    drawn = chart_data(browser, "chart-experiment-0-churn")
    interval = [100 * churn["low"], 100 * churn["high"]]
    assert drawn["data"][0][0] == pytest.approx(interval)
    assert drawn["data"][1][0] == pytest.approx(100 * churn["estimate"])
    assert painted(browser, "chart-experiment-0-churn") > 500


def check_customer_lookup(browser: WebDriver, worker: WorkerProcess, sizes: Any) -> None:
    segment = next(s for s, n in sizes["models"]["lifecycle"].items() if n)
    (customer,) = read(worker, f"/shops/{SHOP}/segments/lifecycle/{segment}?limit=1")["customers"]
    field = browser.find_element(By.ID, "customer-input")
    field.send_keys(customer)
    browser.find_element(By.CSS_SELECTOR, "#customer-form button").click()
    assert settled(browser, ("customer",)) == {"customer": "ready"}
    found = read(worker, f"/shops/{SHOP}/customers/{customer}")
    shown = {row[0]: row[1] for row in cells(browser, "customer")[1:]}
    assert shown["lifecycle"] == segment == found["segments"]["lifecycle"]
    assert shown["orders"] == str(found["features"]["order_count"])


def test_an_unknown_token_sees_nothing_but_a_clear_message(
    browser: WebDriver, worker: WorkerProcess
) -> None:
    open_console(browser, worker, f"token=sst_made-up&shop={SHOP}")
    message = WebDriverWait(browser, SETTLE_S, 0.1).until(
        lambda b: b.find_element(By.CSS_SELECTOR, "#message.error"), "no refusal shown"
    )
    assert "not accepted" in message.text
    nothing_shown(browser)
    screenshot(browser, "console-unknown-token")
    assert errors(browser, worker, allowed=(401,)) == []


def test_a_shop_token_sees_its_shop_and_nothing_of_another(
    browser: WebDriver, worker: WorkerProcess
) -> None:
    other = next(s for s in sorted({e["shop_id"] for e in simulation().events}) if s != SHOP)
    open_console(browser, worker, f"token={SHOP_TOKEN}&shop={other}")
    listed = not absent(worker, "/shops")
    if listed:  # the list holds the token's shop only: another cannot even be asked for
        options = browser.find_elements(By.CSS_SELECTOR, "#shop-select option")
        assert [o.get_attribute("value") for o in options] == [SHOP]
    else:
        message = WebDriverWait(browser, SETTLE_S, 0.1).until(
            lambda b: b.find_element(By.CSS_SELECTOR, "#message.error"), "no refusal shown"
        )
        assert message.text == f"This token may not read shop {other}. Nothing is shown."
        nothing_shown(browser)
        screenshot(browser, "console-shop-token-other-shop")
        field = browser.find_element(By.ID, "shop-input")
        field.clear()
        field.send_keys(SHOP)
        browser.find_element(By.CSS_SELECTOR, "#shop-form button").click()
    states = settled(browser)
    assert states["segments"] == "ready" and states["metrics"] == "ready", states
    assert browser.find_element(By.ID, "message").text == f"Shop {SHOP}"
    assert errors(browser, worker, allowed=() if listed else (403,)) == []


def nothing_shown(browser: WebDriver) -> None:
    """No panel, no chart, no table: the page shows the message and the forms only."""
    assert not browser.find_element(By.ID, "panels").is_displayed()
    assert browser.execute_script("return Object.keys(Chart.instances).length") == 0
    assert browser.find_elements(By.CSS_SELECTOR, "[data-role=body] *") == []


CANNED_FLOWS = {
    "shop_id": SHOP,
    "model": "lifecycle",
    "grain": "month",
    "start": "2025-10-01",
    "end": "2025-11-01",
    "flows": [
        {"from": None, "to": "new", "customers": 3},
        {"from": "active", "to": "at_risk", "customers": 2},
        {"from": "at_risk", "to": "churned", "customers": 1},
        {"from": "new", "to": None, "customers": 1},
    ],
    "entered": {"new": 3, "at_risk": 2, "churned": 1},
    "left": {"active": 2, "at_risk": 1, "new": 1},
}
"""An answer of ``GET /shops/{shop}/flows`` in the shape the route is specified with."""


def test_the_flow_matrix_draws_an_answer_of_the_specified_shape(
    browser: WebDriver, worker: WorkerProcess
) -> None:
    """The matrix from an answer the page's fetch is handed (a worker without the flows
    route still has its page tested on one): every count in place, entered and left."""
    stub = (
        f"const canned = {json.dumps(CANNED_FLOWS)}; const real = window.fetch;"
        "window.fetch = (input, init) => String(input).includes('/flows?')"
        "  ? Promise.resolve(new Response(JSON.stringify(canned),"
        "      {status: 200, headers: {'Content-Type': 'application/json'}}))"
        "  : real(input, init);"
    )
    added = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": stub})
    try:
        open_console(browser, worker, f"token={PLATFORM_TOKEN}&shop={SHOP}")
        assert settled(browser)["flows"] == "ready"
        assert_flows(browser, CANNED_FLOWS)
        screenshot(browser, "console-flows-specified-shape")
        assert errors(browser, worker) == []
    finally:
        browser.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": added["identifier"]}
        )
