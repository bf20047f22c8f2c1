"""A whole report built from a hand-made SuiteData (no MLflow): the files, index.md, the
numbers in the CSVs, the notes, and the rules of the report folder."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from test_report_tables import history, runs_frame

from analysis.build import BuildOptions, build_report
from analysis.errors import ReportError
from analysis.output import MARKER
from analysis.suite import SuiteData

FAST = BuildOptions(figure_formats=("png",), workers=1)


def _predictions(n_classes: int, wrong_every: int) -> pd.DataFrame:
    labels = np.repeat(np.arange(n_classes), 4)
    pred = np.where(np.arange(len(labels)) % wrong_every == 0, (labels + 1) % n_classes, labels)
    return pd.DataFrame({"path": [f"v/{i}.png" for i in range(len(labels))], "label": labels, "pred": pred,
                         "top5": [f"{p} {(p + 1) % n_classes}" for p in pred], "p_label": 0.5, "p_pred": 0.6})


def suite_data(variants=("base", "wide"), with_predictions=True) -> SuiteData:
    rows, hists, preds = [], [], {}
    for i, v in enumerate(variants):
        p = _predictions(6, wrong_every=3 + i)
        acc = float((p["label"] == p["pred"]).mean())
        rows.append({"variant": v, "seed": 0, "run_id": f"id{v}", "best_val_acc": acc, "best_val_top5_acc": 1.0,
                     "val_f1_macro": 0.5, "val_precision_macro": 0.5, "val_recall_macro": 0.5, "best_epoch": 5.0,
                     "epochs_run": 6.0, "train_time_s": 60.0 * (i + 1), "num_params": 1_234_567 + i,
                     "is_baseline": v == "base", "max_epochs": 6})
        hists.append(history([1e-3] * 3 + [2e-4] * 3, run_id=f"id{v}"))
        if with_predictions:
            preds[f"id{v}"] = p
    classes = pd.DataFrame({"label": range(6), "folder": [str(i) for i in range(6)],
                            "name": ["ant", "bee", "wasp", "fly", "moth", "gnat"]})
    return SuiteData(experiment="handmade", suite_run_id="suite123", tracking_uri="sqlite:///x.db", baseline="base",
                     variants=list(variants), runs=runs_frame(rows), histories=pd.concat(hists, ignore_index=True),
                     predictions=preds, classes=classes, description="A hand-made suite.", suite_status="FINISHED")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "handmade"
    data = suite_data()
    return data, build_report(data, folder, FAST)


def test_every_part_is_written(built):
    _, report = built
    names = {p.relative_to(report.folder).as_posix() for p in report.files}
    assert {"index.md", "figures/fig1_curves_base.png", "figures/fig1_curves_wide.png",
            "figures/fig1_val_acc_all_variants.png",
            "figures/fig2_per_class_baseline_base-seed0.png", "figures/fig2_per_class_best_wide-seed0.png",
            "figures/fig3_confusion_baseline_base-seed0.png", "figures/fig3_confusion_best_wide-seed0.png"} <= names
    for stem in ("ablation", "table2_training_progress", "table3_overall_metrics",
                 "table_weakest_classes_best_wide-seed0", "table_confused_pairs_baseline_base-seed0",
                 "table_asymmetric_pairs_best_wide-seed0"):
        assert {f"tables/{stem}.{ext}" for ext in ("md", "csv", "tex")} <= names
    assert all(p.exists() and p.stat().st_size > 0 for p in report.files)
    assert json.loads((report.folder / MARKER).read_text())["files"] == sorted(names)


def test_index_shows_every_table_and_figure_in_order(built):
    data, report = built
    text = report.index.read_text()
    assert text.startswith("# Report: handmade\n")
    assert "- Suite run: `suite123` (finished)" in text and "- Tracking URI: `sqlite:///x.db`" in text
    assert "- Generated: " in text and "> A hand-made suite." in text
    # the main result first, as in a results section
    order = [text.index(h) for h in ("## Tables 4–6.", "## Figure 1.", "## Table 2.", "## Figure 2.", "## Figure 3.",
                                     "## Table 3.")]
    assert order == sorted(order)
    for path in report.files:
        rel = path.relative_to(report.folder).as_posix()
        if rel.endswith(".png") or rel.endswith(".csv"):
            assert f"]({rel})" in text, rel
    assert (report.folder / "tables" / "ablation.md").read_text().split("\n", 2)[2] in text


def test_the_html_page_is_self_contained(built):
    """index.html embeds every figure (the same PNG bytes) and every table (with its CSV as a
    download), and links nowhere but inside itself: MLflow's artifact viewer shows it alone."""
    import base64
    import re

    _, report = built
    page = (report.folder / "index.html").read_text()
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)">', page)
    pngs = sorted(p for p in report.files if p.suffix == ".png")
    assert len(images) == len(pngs) > 0
    assert sorted(base64.b64decode(i) for i in images) == sorted(p.read_bytes() for p in pngs)
    refs = re.findall(r'(?:href|src)="([^"]+)"', page)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [r[:40] for r in refs if not r.startswith("data:")]
    tables = sorted(p for p in report.files if p.suffix == ".csv")
    assert page.count("<table>") == len(tables)
    for csv in re.findall(r'href="data:text/csv;base64,([^"]+)"', page):
        assert base64.b64decode(csv).decode() in {p.read_text() for p in tables}
    assert page.index("Tables 4–6.") < page.index("Figure 1.")


def test_the_html_page_renders_in_a_browser(tmp_path):
    """Every figure of index.html loads in headless Chromium: Playwright's own, else the system's
    (skipped without Playwright or any Chromium); the ablation table fits the page."""
    from browser import chromium

    long_diff = {f"model.head.{k}": [a, b] for k, a, b in [("hidden_dim", 64, None), ("dropout_in", 0.3, 0.0),
                                                            ("dropout_hidden", 0.5, 0.0), ("batchnorm", True, False)]}
    long_diff["loss.label_smoothing"] = [0.1, 0.0]
    data = dataclasses.replace(suite_data(), diffs={"wide": long_diff})
    report = build_report(data, tmp_path / "handmade", FAST)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto((report.folder / "index.html").as_uri())
        # the main result fits the page: long diffs and names wrap instead of pushing the numbers off
        overflow = page.eval_on_selector(".wide", "d => d.scrollWidth - d.clientWidth")
        loaded = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
        tables = page.eval_on_selector_all("table", "ts => ts.length")
        links = page.eval_on_selector_all("a[href^='data:']", "as => as.map(a => a.download)")
    assert loaded and all(loaded)
    assert overflow <= 0
    assert tables == len([f for f in report.files if f.suffix == ".csv"])
    assert links and all(name.endswith((".csv", ".tex", ".md")) for name in links)


def test_table_csvs_hold_the_exact_values(built):
    data, report = built
    ablation = pd.read_csv(report.folder / "tables" / "ablation.csv").set_index("variant")
    runs = data.runs.set_index("variant")
    assert ablation.loc["wide", "val_acc_mean"] == runs.loc["wide", "best_val_acc"]
    assert ablation.loc["wide", "num_params"] == 1_234_568
    assert ablation.loc["wide", "delta_pp"] == pytest.approx(100 * (runs.loc["wide", "best_val_acc"]
                                                                     - runs.loc["base", "best_val_acc"]))
    assert ablation.loc["wide", "time_rel"] == 2.0
    weakest = pd.read_csv(report.folder / "tables" / "table_weakest_classes_baseline_base-seed0.csv")
    assert weakest.loc[0, "name"] in {"ant", "bee", "wasp", "fly", "moth", "gnat"}
    assert (weakest["accuracy"] < 1).all()


def test_logged_metrics_that_disagree_with_predictions_are_reported(built):
    _, report = built
    # the hand-made macro metrics (0.5) are not those of the hand-made predictions
    assert any("disagrees with the logged" in n and "val_precision_macro" in n for n in report.notes)


def test_rebuild_replaces_its_own_files_and_keeps_the_users(tmp_path):
    folder = tmp_path / "r"
    build_report(suite_data(with_predictions=False), folder, FAST)
    (folder / "my_notes.txt").write_text("mine")
    second = build_report(suite_data(variants=("base",), with_predictions=False), folder, FAST)
    assert "figures/fig1_curves_wide.png" in second.stale_removed
    assert not (folder / "figures" / "fig1_curves_wide.png").exists()
    assert (folder / "figures" / "fig1_curves_base.png").exists()
    assert (folder / "my_notes.txt").read_text() == "mine"
    assert any("No predictions artifact" in n for n in second.notes)
    assert "## Figure 2." not in second.index.read_text()


def test_refuses_a_folder_that_is_not_a_report(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(ReportError, match="not empty and holds no earlier report"):
        build_report(suite_data(with_predictions=False), tmp_path, FAST)
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.tex"]
