"""Seeds as an axis: a 3-seed suite gives 3 children per variant, and the report's ablation
table shows mean ± std (n), the test across seeds and a verdict per row."""

from __future__ import annotations

import pandas as pd
from mlflow.tracking import MlflowClient

from analysis.cli import main as report_main
from bioclf.runner import run_suite
from bioclf.spec import load_suite
from bioclf.tracking import contract as C
from conftest import TINY, write_spec


def test_three_seeds_three_children_and_mean_std_in_the_table(tmp_path):
    spec = dict(TINY, seeds=[1, 2, 3], train={"epochs": 1}, baseline="a",
                variants={"a": {}, "b": {"loss.label_smoothing": 0.0}})
    path = write_spec(tmp_path, spec)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_suite(load_suite(path), tracking_uri=uri, quiet=True, echo=lambda s: None)
    assert [(o.variant, o.seed, o.status) for o in result.outcomes] == [
        ("a", 1, "finished"), ("a", 2, "finished"), ("a", 3, "finished"),
        ("b", 1, "finished"), ("b", 2, "finished"), ("b", 3, "finished")]

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny")
    children = client.search_runs([exp.experiment_id], "tags.`bioclf.role` = 'variant'")
    per_variant = pd.Series([c.data.tags[C.VARIANT] for c in children]).value_counts().to_dict()
    assert per_variant == {"a": 3, "b": 3}

    assert report_main(["--tracking-uri", uri, "--out", str(tmp_path / "reports"), "--no-log",
                        "--figure-formats", "png"]) == 0
    table = pd.read_csv(tmp_path / "reports" / "tiny" / "tables" / "ablation.csv").set_index("variant")
    accs = {v: [c.data.metrics["best_val_acc"] for c in children if c.data.tags[C.VARIANT] == v]
            for v in ("a", "b")}
    for v in ("a", "b"):
        assert table.loc[v, "n_finished"] == 3
        assert table.loc[v, "val_acc_mean"] == pd.Series(accs[v]).mean()
        assert abs(table.loc[v, "val_acc_std"] - pd.Series(accs[v]).std(ddof=1)) < 1e-12
    assert "seed" in table.loc["b", "test"] or "paired-t" in table.loc["b", "test"]
    markdown = (tmp_path / "reports" / "tiny" / "tables" / "ablation.md").read_text()
    assert "±" in markdown and "Holm" in markdown
