"""The workshop in a real browser: JupyterLab, /docs and /monitor in headless Chromium, against `make up`'s stack.

Debian's chromium, driven by playwright (never a browser of its own); the stack runs from a
temporary copy of the working tree (tests/stack.py, temporary_project). A failing test leaves a screenshot in a
temporary folder and prints its path. Run by `make test-browser`; skipped when no Docker daemon answers.
"""

from __future__ import annotations

import difflib
import shutil
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from penguins import MODEL_NAMES
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tests.helpers import FAILED, odd_records, wait_for
from tests.stack import Project, docker, temporary_project

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

# A browser that never reaches beyond the machine on its own: no updates, no field trials.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
KERNEL_IDLE = "Python 3 (ipykernel) | Idle"
NEWS_PROMPT = "official Jupyter news"
# Runs all cells: the full training, in the kernel.
RUN_SECONDS = 180


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    with temporary_project(tmp_path_factory.mktemp("browser-e2e")) as project:
        project.make("up")
        yield project


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: `make test-browser` installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    opened = context.new_page()
    yield opened
    if request.node.stash.get(FAILED, False):
        screenshot = tmp_path_factory.mktemp("screenshots") / f"{request.node.name}.png"
        opened.screenshot(path=screenshot)
        print(f"screenshot: {screenshot}")
    context.close()


def record_requests(page: Page) -> list[str]:
    urls: list[str] = []
    page.on("request", lambda sent: urls.append(sent.url))
    return urls


def record_console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def open_notebook(page: Page, stack: Project, path: str) -> None:
    # ?reset: a fresh workspace, not the tabs a previous test left open.
    page.goto(f"{stack.jupyter_url}/lab/tree/{path}?reset&token={stack.token()}")
    # Either the kernel starts, or (a notebook without a kernelspec) the kernel dialog waits for the user.
    expect(page.get_by_text(KERNEL_IDLE).or_(page.locator(".jp-Dialog")).first).to_be_visible(timeout=90_000)
    expect(page.locator(".jp-Dialog")).to_have_count(0)
    expect(page.get_by_text(KERNEL_IDLE)).to_be_visible()


def trained_at(stack: Project, model: str) -> datetime:
    response = httpx.get(f"{stack.api_url}/models/{model}", timeout=30)
    assert response.status_code == 200, response.text
    return datetime.fromisoformat(response.json()["trained_at"])


def api_started_at(stack: Project) -> str:
    (container,) = stack.containers("api")
    return docker("inspect", "-f", "{{.State.StartedAt}}", container).strip()


def run_all_cells(page: Page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def test_running_the_training_notebook_updates_the_served_models(page: Page, stack: Project) -> None:
    before = {model: trained_at(stack, model) for model in MODEL_NAMES}
    started = api_started_at(stack)
    open_notebook(page, stack, "notebooks/train.ipynb")

    run_all_cells(page)

    outputs = page.locator(".jp-OutputArea-output")
    for model in MODEL_NAMES:
        expect(outputs.filter(has_text=f"saved /shared/models/{model}.pkl")).to_have_count(
            1, timeout=RUN_SECONDS * 1000
        )
    expect(page.get_by_text(KERNEL_IDLE)).to_be_visible()
    after = {model: trained_at(stack, model) for model in MODEL_NAMES}
    assert all(after[model] > before[model] for model in MODEL_NAMES), (before, after)
    assert api_started_at(stack) == started, "the API was restarted"


def test_jupyterlab_does_not_ask_about_jupyter_news(page: Page, stack: Project) -> None:
    page.goto(f"{stack.jupyter_url}/lab?reset&token={stack.token()}")
    expect(page.locator("#jp-main-statusbar")).to_be_visible(timeout=60_000)
    # Where the announcements plugin is on, its prompt comes within a second of the workspace.
    page.wait_for_timeout(3_000)

    expect(page.get_by_text(NEWS_PROMPT)).to_have_count(0)


def test_a_cell_edited_in_the_browser_is_saved_to_the_script_on_the_host(page: Page, stack: Project) -> None:
    script = stack.root / "scripts" / "train.py"
    original = script.read_text()
    open_notebook(page, stack, "notebooks/train.ipynb")
    try:
        page.locator(".jp-CodeCell .cm-content").first.click()
        page.keyboard.press("Control+End")
        page.keyboard.type("\n# Edited in the browser.")
        page.keyboard.press("Control+s")

        wait_for(lambda: "\n# Edited in the browser.\n" in script.read_text(), 15, "the edit to reach scripts/train.py")
        # Nothing else changes: no metadata churn in the committed script.
        diff = difflib.ndiff(original.splitlines(), script.read_text().splitlines())
        assert [line for line in diff if line[:2] in ("+ ", "- ")] == ["+ # Edited in the browser."]
    finally:
        script.write_text(original)


def test_jupyterlab_without_the_token_shows_the_login_page(page: Page, stack: Project) -> None:
    page.goto(f"{stack.jupyter_url}/lab/tree/notebooks/train.ipynb")

    assert urlsplit(page.url).path == "/login"
    expect(page.locator("#token_input")).to_be_visible()
    expect(page.locator("#jp-main-dock-panel")).to_have_count(0)


def docs_operation(page: Page, method: str, path: str) -> Locator:
    """An operation of the /docs page, opened and switched to "Try it out"."""
    operation = page.locator(f".opblock-{method}", has=page.locator(f'.opblock-summary-path[data-path="{path}"]'))
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    return operation


def executed(operation: Locator, status: str) -> Locator:
    """Execute the operation; its live response, once it shows the status."""
    operation.get_by_role("button", name="Execute").click()
    response = operation.locator(".live-responses-table .response")
    expect(response.locator(".response-col_status")).to_have_text(status)
    return response


@pytest.mark.parametrize(
    ("method", "path", "parameters", "expected"),
    [
        pytest.param("post", "/predict", {}, '"predictions": [', id="predict"),
        pytest.param("post", "/v2/models/{name}/infer", {"name": "logistic_regression"}, '"outputs": [', id="v2-infer"),
    ],
)
def test_docs_try_it_out_answers(
    page: Page, stack: Project, method: str, path: str, parameters: dict[str, str], expected: str
) -> None:
    requests, errors = record_requests(page), record_console_errors(page)
    page.goto(f"{stack.api_url}/docs")
    operation = docs_operation(page, method, path)
    for name, value in parameters.items():
        operation.locator(f'input[placeholder="{name}"]').fill(value)

    response = executed(operation, "200")
    expect(response.locator(".response-col_description")).to_contain_text(expected)
    assert errors == []
    leaving = [url for url in requests if urlsplit(url).scheme != "data" and urlsplit(url).hostname != "127.0.0.1"]
    assert leaving == []
    called = path.format(**parameters)
    assert any(urlsplit(url).path == called for url in requests), requests


def test_the_monitor_page_shows_each_models_drift_offline(page: Page, stack: Project) -> None:
    record = {"island": "Dream", "bill_length_mm": 46.5, "bill_depth_mm": 17.9, "flipper_length_mm": 192,
              "body_mass_g": 3500, "sex": "Female"}  # fmt: skip
    answer = httpx.post(f"{stack.api_url}/predict?model=svc", json={"records": [record] * 120}, timeout=30)
    assert answer.status_code == 200, answer.text
    requests, errors = record_requests(page), record_console_errors(page)
    page.goto(f"{stack.api_url}/monitor")

    for model in MODEL_NAMES:
        expect(page.locator(f"section#{model} h2")).to_contain_text(model)
    svc = page.locator("section#svc")
    expect(svc).to_contain_text("120 of 1,000 records in the window")
    # Every record alike, unlike the training rows: each feature's badge says significant, in red.
    expect(svc.locator(".psi.significant")).to_have_count(7)
    assert errors == []
    assert {urlsplit(url).path for url in requests} == {"/monitor"}


def test_the_monitor_page_draws_the_live_accuracy_against_the_reference(
    page: Page, stack: Project, tmp_path_factory: pytest.TempPathFactory
) -> None:
    record = {"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0, "flipper_length_mm": 218,
              "body_mass_g": 4950, "sex": "Female"}  # fmt: skip
    headers = {"x-request-id": "browser-labelled"}
    answer = httpx.post(f"{stack.api_url}/predict/logistic_regression", json={"records": [record] * 60},
                        headers=headers, timeout=30)  # fmt: skip
    assert answer.status_code == 200 and set(answer.json()["predictions"]) == {"Gentoo"}, answer.text
    # A third of the labels disagree: the live accuracy falls well below the reference.
    labels = [{"request_id": "browser-labelled", "row": row, "label": "Gentoo" if row % 3 else "Adelie"}
              for row in range(60)]  # fmt: skip
    posted = httpx.post(f"{stack.api_url}/feedback", json=labels, timeout=30)
    assert posted.status_code == 200 and posted.json()["received"] == 60, posted.text

    # A label for a record still in another worker's queue joins it once written; each worker's figures are
    # a few seconds old at most.
    def shown() -> str:
        return httpx.get(f"{stack.api_url}/monitor", timeout=30).text

    wait_for(lambda: "below the training interval" in shown(), 60,
             lambda: f"the labels on the page, which shows: {shown()[-6000:]}", interval=0.5)  # fmt: skip
    requests, errors = record_requests(page), record_console_errors(page)
    page.goto(f"{stack.api_url}/monitor")

    accuracy = page.locator("section#logistic_regression .truth")
    expect(accuracy.locator(".verdict.below")).to_have_text("below the training interval")
    for drawn in (".band", ".mean", ".track.below .interval", ".track.below .point"):
        expect(accuracy.locator(drawn).first).to_be_visible()
    expect(accuracy).to_contain_text("66.7 %")
    expect(accuracy.locator("table.confusion td.miss")).to_have_text("20")
    # The live interval lies left of the reference band, on the same scale.
    interval = accuracy.locator(".track.below .interval").bounding_box()
    band = accuracy.locator(".track.below .band").bounding_box()
    assert interval is not None and band is not None and interval["x"] + interval["width"] < band["x"]
    screenshot = tmp_path_factory.mktemp("monitor") / "accuracy.png"
    page.locator("section#logistic_regression").screenshot(path=screenshot)
    print(f"screenshot: {screenshot}")
    assert errors == []
    assert {urlsplit(url).path for url in requests} == {"/monitor"}


def test_the_monitor_page_shows_a_route_its_variant_and_its_shadows_disagreement(page: Page, stack: Project) -> None:
    stack.make_with({"ROUTE": "penguins", "VARIANTS": "logistic_regression=100", "SHADOWS": "random_forest"}, "route")
    wait_for(lambda: httpx.get(f"{stack.api_url}/routes/penguins", timeout=30).status_code == 200, 30,
             "the route to be served")  # fmt: skip
    answer = httpx.post(f"{stack.api_url}/predict/penguins", json={"records": odd_records(40)}, timeout=30)
    assert answer.status_code == 200 and answer.headers["x-route-variant"] == "logistic_regression", answer.text

    def shadowed() -> dict[str, Any] | None:
        figures: dict[str, Any] = httpx.get(f"{stack.api_url}/routes/penguins", timeout=30).json()
        return figures if figures["shadows"] and figures["shadows"][0]["records"] == 40 else None

    figures = wait_for(shadowed, 30, "the shadow to predict the 40 records")
    requests, errors = record_requests(page), record_console_errors(page)
    page.goto(f"{stack.api_url}/monitor")

    section = page.locator("section#route-penguins")
    expect(section.locator("h2")).to_contain_text("Route penguins")
    expect(section.locator("table").first).to_contain_text("logistic_regression")
    expect(section.locator("table").first).to_contain_text("100%")
    shadow_row = section.locator("table").nth(1).locator("tr").nth(1)
    expect(shadow_row).to_contain_text("random_forest")
    expect(shadow_row.locator("td").nth(3)).to_have_text(f"{figures['shadows'][0]['disagreements']:,}")
    assert errors == []
    assert {urlsplit(url).path for url in requests} == {"/monitor"}


@pytest.fixture
def guarded_api(stack: Project) -> Iterator[str]:
    """The stack's API restarted with an API_TOKEN, the project's way (`make serve`); without it again after."""
    token = "docs-authorize-" + "0123456789abcdef"
    stack.make_with({"API_TOKEN": token}, "serve")
    try:
        yield token
    finally:
        stack.make("serve")


def test_docs_authorize_button_opens_the_protected_routes(page: Page, stack: Project, guarded_api: str) -> None:
    page.goto(f"{stack.api_url}/docs")
    executed(docs_operation(page, "get", "/models"), "401")

    page.locator(".auth-wrapper .authorize").click()
    page.locator(".auth-container input").fill(guarded_api)
    page.locator(".auth-btn-wrapper").get_by_role("button", name="Authorize").click()
    page.locator(".auth-btn-wrapper").get_by_role("button", name="Close").click()

    response = executed(page.locator(".opblock-get", has=page.locator('[data-path="/models"]')), "200")
    expect(response.locator(".response-col_description")).to_contain_text("modelos_disponibles")
