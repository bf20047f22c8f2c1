"""Screenshots for the docs, from the smoke suite: MLflow's runs table, the suite run, the HTML report.

    python docs/screenshots.py                 # writes docs/img/{runs_table,suite_run,report}.png
    python docs/screenshots.py --out /tmp/img  # elsewhere (nothing in docs/ is touched)

What it does, so the pictures can be refreshed after a change to the UI or the report: trains
``experiments/smoke.yaml`` (generated data; about a minute on 2 CPU cores) into a new SQLite store
in a temporary folder, writes its report with ``bioclf-report``, starts ``bioclf-exp ui`` on a free
port, and photographs three pages in headless Chromium.

Needs Playwright (``pip install playwright``) and a Chromium: Playwright's own
(``playwright install chromium``) or the system's (``apt install chromium``).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the browser launcher is shared with the HTML test

SPEC = REPO / "experiments" / "smoke.yaml"
VIEW = {"width": 2100, "height": 800}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*args: str, env: dict | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return done.stdout


def _wait_for(url: str, server: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"bioclf-exp ui exited {server.returncode}: {server.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"the MLflow UI did not answer at {url} within {seconds:.0f} s")


def _ids(uri: str) -> tuple[str, str]:
    """(experiment id, suite run id) of the smoke suite in the store."""
    from mlflow.tracking import MlflowClient

    from bioclf.tracking import contract

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("smoke")
    (suite,) = client.search_runs([experiment.experiment_id], f"tags.`{contract.ROLE}` = '{contract.ROLE_SUITE}'",
                                  max_results=1, order_by=["attributes.start_time DESC"])
    return experiment.experiment_id, suite.info.run_id


def _click(page, selector: str, timeout_error) -> bool:
    try:
        page.locator(selector).first.click(timeout=3000)
        return True
    except timeout_error:
        return False


def _tidy_ui(page, timeout_error) -> None:
    """What a user does first in MLflow 3's UI: the "Model training" side of its GenAI / Model
    training switch, the assistant panel closed, the suite's child runs shown under it."""
    _click(page, "text=Model training", timeout_error)
    _click(page, "[aria-label='Close']", timeout_error)
    if "/runs/" not in page.url:  # the runs table: open the suite run's group of child runs
        _click(page, "[aria-label='Expand']", timeout_error) or _click(page, "button:left-of(:text('suite smoke'))",
                                                                          timeout_error)
        _tick_columns(page, COLUMNS, timeout_error)


# docs/report.md, "Seeing the comparison in the MLflow UI": the columns a user ticks
COLUMNS = ("best_val_acc", "val_f1_macro", "train_time_s", "bioclf.diff", "bioclf.seed")


def _tick_columns(page, names, timeout_error) -> None:
    """Tick ``names`` in the runs table's Columns menu, through its search box."""
    if not _click(page, "text=Columns", timeout_error):
        return
    search = page.locator("input[placeholder='Search columns']").first
    for name in names:
        try:
            search.fill(name, timeout=3000)
            page.get_by_text(name, exact=True).last.click(timeout=3000)
        except timeout_error:
            print(f"runs_table: no column {name} to tick", file=sys.stderr)
    page.keyboard.press("Escape")


def photograph(base: str, experiment_id: str, suite_id: str, report: Path, out: Path) -> list[Path]:
    from browser import launch
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from bioclf.tracking.uri import runs_url

    pages = [
        ("runs_table", runs_url(experiment_id, base), "text=suite smoke"),
        ("suite_run", f"{base}/#/experiments/{experiment_id}/runs/{suite_id}", "text=suite smoke"),
        ("report", report.as_uri(), "text=Tables 4–6"),
    ]
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport=VIEW)
            for name, url, ready in pages:
                page.goto(url)
                try:
                    page.wait_for_selector(ready, timeout=60_000)
                except PlaywrightTimeout:
                    print(f"{name}: '{ready}' did not show within 60 s; photographed as it is", file=sys.stderr)
                if url.startswith("http"):
                    _tidy_ui(page, PlaywrightTimeout)
                page.wait_for_timeout(1500)  # the UI's tables and charts settle after the first paint
                path = out / f"{name}.png"
                page.screenshot(path=str(path))
                shots.append(path)
        finally:
            browser.close()
    return shots


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="folder of the PNGs (default: docs/img)")
    p.add_argument("--keep", type=Path, help="keep the store here (and reuse it when it is there: no training)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bioclf-screenshots-") as scratch:
        tmp = args.keep or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        if not (tmp / "mlflow.db").exists():
            print("training the smoke suite (about a minute)...", flush=True)
            _run("bioclf.cli", "run", str(SPEC), "--tracking-uri", uri, env={"BIOCLF_WORK_DIR": str(tmp / "work")})
        _run("analysis.cli", "--tracking-uri", uri, "--out", str(tmp / "reports"))
        experiment_id, suite_id = _ids(uri)
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "bioclf.cli", "ui", "--tracking-uri", uri, "--port", str(port)],
                                  cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_for(base, server)
            shots = photograph(base, experiment_id, suite_id, tmp / "reports" / "smoke" / "index.html", args.out)
        finally:
            server.terminate()
            server.wait(timeout=30)
    for path in shots:
        print(path)


if __name__ == "__main__":
    main()
