"""Round trip: train a tiny suite once, run ``bioclf-report`` on the store, and check that every
expected file exists and that the numbers in the tables are those in the store; then the same
report through an ``mlflow server`` on 127.0.0.1 (HTTP) must give the same tables."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, write_spec
from servers import start_mlflow_server as _start_server
from servers import stop_mlflow_server as _stop_server
from servers import wait_healthy as _wait_healthy
from mlflow.tracking import MlflowClient
from test_report_fakestore import fresh_store, write_fake_suite

from analysis import classwise
from analysis.cli import main

VARIANTS = {"full": {}, "linear": {"model.head": {"hidden_dim": None, "dropout_in": 0.0, "dropout_hidden": 0.0,
                                                  "batchnorm": False}}}


@pytest.fixture(scope="module")
def suite(request, tmp_path_factory):
    """The tiny suite, trained once for the module. The HTTP server (slow to start) starts first
    when an HTTP test is selected, so that it boots while the suite trains."""
    from bioclf.runner import run_suite
    from bioclf.spec import load_suite

    root = tmp_path_factory.mktemp("report-e2e")
    uri = fresh_store(root / "store")
    wants_http = any("http" in item.name for item in request.session.items)
    server = _start_server(root, uri) if wants_http else None
    import torch

    threads = torch.get_num_threads()
    try:
        spec = write_spec(root, {**TINY, "variants": VARIANTS, "baseline": "full"})
        # One intra-op thread: next to a booting server, OpenMP threads spinning for the CPU
        # made this toy training several times slower; the tiny model does not need two.
        torch.set_num_threads(1)
        result = run_suite(load_suite(spec), tracking_uri=uri, quiet=True, echo=lambda s: None)
        torch.set_num_threads(threads)
        assert [o.status for o in result.outcomes] == ["finished", "finished"]
        yield SimpleNamespace(root=root, uri=uri, result=result, server=server,
                              client=MlflowClient(tracking_uri=uri))
    finally:
        torch.set_num_threads(threads)
        if server is not None:
            _stop_server(server)


@pytest.fixture(scope="module")
def report(suite):
    out = suite.root / "reports"
    rc = main(["--tracking-uri", suite.uri, "--out", str(out)])
    assert rc == 0
    return out / "tiny"


def _runs(suite) -> dict[str, object]:
    return {o.variant: suite.client.get_run(o.run_id) for o in suite.result.outcomes}


def test_every_expected_file_exists(suite, report):
    runs = _runs(suite)
    best = max(runs, key=lambda v: runs[v].data.metrics["best_val_acc"])
    roles = ["best-baseline_full-seed0"] if best == "full" else ["baseline_full-seed0", f"best_{best}-seed0"]
    figs = ["fig1_curves_full", "fig1_curves_linear", "fig1_val_acc_all_variants", "fig_ablation_delta"]
    figs += [f"fig{n}_{kind}_{r}" for r in roles for n, kind in ((2, "per_class"), (3, "confusion"))]
    tabs = ["ablation", "ablation_cost", "table2_training_progress", "table3_overall_metrics"]
    tabs += [f"table_{kind}_{r}" for r in roles for kind in ("weakest_classes", "confused_pairs", "asymmetric_pairs")]
    expected = {"index.md", "index.html"} | {f"figures/{f}.png" for f in figs} | \
        {f"tables/{t}.{e}" for t in tabs for e in ("md", "csv", "tex")}  # PDF only with --pdf
    written = {p.relative_to(report).as_posix() for p in report.rglob("*")
               if p.is_file() and p.name not in (".bioclf-report", ".report-cache.json")}
    assert written == expected
    index = (report / "index.md").read_text()
    assert f"- Suite run: `{suite.result.suite_run_id}`" in index and suite.uri in index


def test_report_is_logged_back_to_the_suite_run(suite, report):
    client, suite_id = suite.client, suite.result.suite_run_id
    top = {f.path for f in client.list_artifacts(suite_id, "report")}
    assert {"report/index.md", "report/index.html", "report/figures", "report/tables"} <= top
    logged = {Path(f.path).name for f in client.list_artifacts(suite_id, "report/tables")}
    assert logged == {p.name for p in (report / "tables").iterdir()}
    # the suite run carries the table: what the MLflow UI shows of the comparison
    from bioclf.tracking import contract as C

    parent = client.get_run(suite_id).data
    ablation = pd.read_csv(report / "tables" / "ablation.csv").set_index("variant")
    for variant in ("full", "linear"):
        assert parent.tags[C.VERDICT_PREFIX + variant] == ablation.loc[variant, "verdict"]
        assert parent.metrics[f"{variant}/val_acc_mean"] == pytest.approx(ablation.loc[variant, "val_acc_mean"])
    for name in ("delta", "delta_ci_low", "delta_ci_high", "p_holm"):
        assert parent.metrics[f"linear/{name}"] == pytest.approx(ablation.loc["linear", name])
    # logged when the suite ended already, from the runs' best_val_acc
    first = client.get_metric_history(suite_id, "linear/val_acc_mean")[0].value
    assert first == pytest.approx(_runs(suite)["linear"].data.metrics["best_val_acc"])


def test_ablation_and_metrics_tables_equal_the_store(suite, report):
    runs = _runs(suite)
    ablation = pd.read_csv(report / "tables" / "ablation.csv").set_index("variant")
    assert list(ablation.index) == ["full", "linear"]
    assert ablation.loc["full", "verdict"] == "baseline"
    assert ablation.loc["linear", "verdict"] in {"better", "worse", "within noise"}
    assert 0.0 <= ablation.loc["linear", "p_holm"] <= 1.0
    assert ablation.loc["linear", "delta_ci_low"] <= ablation.loc["linear", "delta"] <= ablation.loc["linear", "delta_ci_high"]
    base = runs["full"].data.metrics
    for variant, run in runs.items():
        m, p = run.data.metrics, run.data.params
        row = ablation.loc[variant]
        assert row["val_acc_mean"] == m["best_val_acc"]
        assert row["num_params"] == int(p["model.num_params"])
        assert row["epochs_run_mean"] == m["epochs_run"]
        assert row["delta_pp"] == pytest.approx(100 * (m["best_val_acc"] - base["best_val_acc"]), abs=1e-12)
        assert row["time_rel"] == pytest.approx(m["train_time_s"] / base["train_time_s"])
    metrics = pd.read_csv(report / "tables" / "table3_overall_metrics.csv").set_index("variant")
    for variant, run in runs.items():
        for key in ("best_val_acc", "best_val_top5_acc", "val_f1_macro", "val_precision_macro", "val_recall_macro"):
            assert metrics.loc[variant, key] == run.data.metrics[key], (variant, key)
    shown = (report / "tables" / "ablation.md").read_text()
    assert f"| {100 * runs['linear'].data.metrics['best_val_acc']:.1f} |" in shown


def test_progress_table_equals_the_metric_histories(suite, report):
    progress = pd.read_csv(report / "tables" / "table2_training_progress.csv")
    for variant, run in _runs(suite).items():
        rows = progress[progress["variant"] == variant]
        assert rows["epoch"].iloc[0] == 1 and "first" in rows["event"].iloc[0]
        assert rows["epoch"].iloc[-1] == run.data.metrics["epochs_run"]
        best = rows[rows["event"].str.contains("best")]
        assert list(best["epoch"]) == [run.data.metrics["best_epoch"]]
        for key in ("val_acc", "train_loss", "lr"):
            logged = {m.step: m.value for m in suite.client.get_metric_history(run.info.run_id, key)}
            assert dict(zip(rows["epoch"], rows[key])) == {e: logged[e] for e in rows["epoch"]}


def test_macro_metrics_recomputed_from_predictions_equal_the_logged(suite, tmp_path):
    for variant, run in _runs(suite).items():
        local = suite.client.download_artifacts(run.info.run_id, "predictions/val.csv", str(tmp_path))
        recomputed = classwise.macro_scores(pd.read_csv(local))
        for key, value in recomputed.items():
            assert value == pytest.approx(run.data.metrics[key], abs=1e-12), (variant, key)


@pytest.mark.slow
def test_http_server_gives_the_same_report(suite, report):
    _wait_healthy(suite.server)
    out = suite.root / "reports-http"
    assert main(["--tracking-uri", suite.server.uri, "--out", str(out), "--no-log", "--figure-formats", "png"]) == 0
    http = out / "tiny"
    for csv in sorted((report / "tables").glob("*.csv")):
        assert (http / "tables" / csv.name).read_bytes() == csv.read_bytes(), csv.name
    # All but the header's URI and date, and the captions' links to the PDFs not asked for here.
    same = lambda text: [ln for ln in text.splitlines()  # noqa: E731
                         if not ln.startswith(("- Tracking URI", "- Generated", "*"))]
    assert same((http / "index.md").read_text()) == same((report / "index.md").read_text())
    pngs = lambda folder: sorted(p.name for p in (folder / "figures").glob("*.png"))  # noqa: E731
    assert pngs(http) == pngs(report)


@pytest.mark.slow
def test_http_server_with_proxied_artifacts(suite, tmp_path):
    """A suite logged through the server (artifacts under mlflow-artifacts:/) reads back whole,
    and the report's files are logged back through the server."""
    from analysis.store import StoreReader

    _wait_healthy(suite.server)
    truth = write_fake_suite(suite.server.uri, name="via-http", variants=2, epochs=5, num_classes=5)
    reader, client = StoreReader(suite.server.uri), MlflowClient(tracking_uri=suite.server.uri)
    assert reader.read_through == "mlflow"
    data = reader.load("via-http", reader.latest_suite("via-http"))
    assert data.notes == []
    assert client.get_run(truth["suite_id"]).info.artifact_uri.startswith("mlflow-artifacts:")
    for (variant, seed), run in truth["runs"].items():
        got = data.runs.set_index("variant").loc[variant]
        assert got["best_val_acc"] == run["summary"]["best_val_acc"]
        np.testing.assert_allclose(data.history_of(run["run_id"])["val_acc"], run["history"]["val_acc"])
    assert data.classes["name"].tolist() == [f"Species {i:03d}" for i in range(5)]
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "t.csv").write_text("a\n1\n")
    (tmp_path / "index.md").write_text("# r\n")
    reader.log_report(truth["suite_id"], tmp_path, ["tables", "figures"], ["index.md"])
    logged = {f.path for f in client.list_artifacts(truth["suite_id"], "report")}
    assert logged == {"report/index.md", "report/tables"}


def test_a_taxonomy_given_to_the_report_measures_every_runs_mistakes(suite, tmp_path, capsys):
    """--taxonomy on a store trained without one: Table 7 from each run's logged softmax. Its
    class accuracy is the run's best_val_acc, and hdist@1 = error rate x mistake severity;
    Table 7b compares each row with the baseline; the figure of mistake heights is drawn."""
    classes = pd.read_csv(suite.client.download_artifacts(suite.result.outcomes[0].run_id, "classes.csv", str(tmp_path)))
    folders = classes.sort_values("label")["folder"].astype(str).tolist()
    tree = tmp_path / "taxonomy.csv"
    tree.write_text("class,genus\n" + "".join(f"{f},g{i // 2}\n" for i, f in enumerate(folders)))
    out = tmp_path / "reports"
    # --experiment: the module's store also holds the HTTP tests' suites, readable only through their server
    args = ["--tracking-uri", suite.uri, "--experiment", "tiny", "--out", str(out), "--no-log"]
    assert main([*args, "--taxonomy", str(tree)]) == 0
    table = pd.read_csv(out / "tiny" / "tables" / "table7_taxonomy.csv").set_index(["variant", "ranking"])
    runs = _runs(suite)
    assert set(table.index) == {(v, r) for v in runs for r in ("as trained", "CRM")}
    for variant, run in runs.items():
        row = table.loc[(variant, "as trained")]
        assert row["class_acc"] == pytest.approx(run.data.metrics["best_val_acc"], abs=1e-9)
        assert row["genus_acc"] >= row["class_acc"]
        if row["class_acc"] < 1:  # with mistakes: each is at height 1 (same genus) or 2 (the root)
            assert row["hdist@1"] == pytest.approx((1 - row["class_acc"]) * row["mistake_severity"], abs=1e-9)
            assert 1 <= row["mistake_severity"] <= 2
        assert table.loc[(variant, "CRM"), "hdist@1"] >= 0
    deltas = pd.read_csv(out / "tiny" / "tables" / "table7b_taxonomy_delta.csv")
    assert set(zip(deltas["variant"], deltas["ranking"])) == {("full", "CRM"), ("linear", "as trained"),
                                                              ("linear", "CRM")}
    linear = deltas.set_index(["variant", "ranking"]).loc[("linear", "as trained")]
    assert linear["acc_delta"] == pytest.approx(runs["linear"].data.metrics["best_val_acc"]
                                                - runs["full"].data.metrics["best_val_acc"], abs=1e-9)
    index = (out / "tiny" / "index.md").read_text()
    assert "Table 7. Mistakes in the taxonomy" in index and "fig7_mistake_heights.png" in index
    assert "fig3_confusion_tree_" in index

    tree.write_text("class,genus\n" + "".join(f"{f},g{i // 2}\n" for i, f in enumerate(folders[:-1])))
    capsys.readouterr()
    assert main([*args, "--taxonomy", str(tree)]) == 2
    err = capsys.readouterr().err
    assert f"class '{folders[-1]}' of the dataset has no row" in err and "Traceback" not in err


def test_the_tree_the_runs_trained_with_is_the_reports_without_being_asked(tmp_path):
    """Runs trained with a taxonomy log it (taxonomy.csv); bioclf-report reads it back and builds
    Table 7 with no --taxonomy."""
    from bioclf.runner import run_suite
    from bioclf.spec import load_suite

    uri = fresh_store(tmp_path / "store")
    spec = write_spec(tmp_path, {**TINY, "name": "tree", "data": {**TINY["data"], "synthetic": {
        **TINY["data"]["synthetic"], "hierarchy": [2]}}, "train": {"epochs": 1},
        "variants": {"ce": {}, "hxe": {"loss.name": "hxe", "loss.hxe_alpha": 0.5}}, "baseline": "ce"})
    result = run_suite(load_suite(spec), tracking_uri=uri, quiet=True, echo=lambda s: None)
    assert [o.status for o in result.outcomes] == ["finished", "finished"]
    out = tmp_path / "reports"
    assert main(["--tracking-uri", uri, "--out", str(out), "--no-log"]) == 0
    table = pd.read_csv(out / "tree" / "tables" / "table7_taxonomy.csv")
    assert list(table["variant"]) == ["ce", "ce", "hxe", "hxe"]
    assert {"class_acc", "genus_acc"} <= set(table.columns) and "family_acc" not in table.columns
    assert "Tree: class → genus" in (out / "tree" / "index.md").read_text()
