"""Config hashes are stable across releases (bioclf.spec.hashing, docs/tracking.md).

- the frozen table covers every hashed field and records every default that moved;
- adding a field whose default keeps the old behaviour leaves every hash as it was;
- changing a default changes exactly the hashes of the configs that take it;
- a store written by the last version-1 release (tests/fixtures/v1_store: its hashes and
  params) is recognised: every run whose config is unchanged is skipped, and re-tagged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from bioclf.runner import run_suite
from bioclf.spec import hashing, load_suite
from bioclf.spec.hashing import CHANGED_DEFAULTS, HASH_DEFAULTS, config_diff, hash_config, hashed_values
from bioclf.spec.schema import RunConfig
from bioclf.tracking import contract as C

FIXTURE = Path(__file__).parent / "fixtures" / "v1_store"


def test_every_hashed_field_has_a_frozen_default():
    missing = sorted(set(hashed_values(RunConfig())) - set(HASH_DEFAULTS))
    assert not missing, (f"add {missing} to bioclf.spec.hashing.HASH_DEFAULTS with the default that keeps the "
                         "old behaviour (append; never edit an entry)")


def test_a_default_never_moves_without_being_recorded():
    current = hashed_values(RunConfig())
    moved = {k: (v, current[k]) for k, v in HASH_DEFAULTS.items() if k in current and current[k] != v}
    unrecorded = {k: pair for k, pair in moved.items() if k not in CHANGED_DEFAULTS}
    assert not unrecorded, (f"defaults moved: {unrecorded}; keep the HASH_DEFAULTS entry and record the move in "
                            "CHANGED_DEFAULTS (it changes the hashes of configs that use the new default)")
    for key, (entry, new, why) in CHANGED_DEFAULTS.items():
        assert HASH_DEFAULTS[key] == entry and current[key] == new and why


def test_the_hash_is_made_of_the_values_that_differ_from_the_table():
    assert config_diff(RunConfig()) == {"data.pipeline": "auto"}  # the one default that moved
    a = RunConfig.model_validate({"loss": {"label_smoothing": 0.1}})  # the table's value, written out
    assert hash_config(a) == hash_config(RunConfig())
    b = RunConfig.model_validate({"loss": {"label_smoothing": 0.2}})
    assert hash_config(b) != hash_config(a) and len(hash_config(b)) == 12
    # unhashed fields (workers, device) never count
    assert hash_config(RunConfig.model_validate({"data": {"num_workers": 0}, "train": {"device": "cpu"}})) == \
        hash_config(RunConfig())


def test_adding_a_field_with_the_old_behaviour_as_default_changes_no_hash(monkeypatch):
    configs = [RunConfig(), RunConfig.model_validate({"optimizer": {"lr": 0.01}})]
    before = [hash_config(c) for c in configs]
    plain = hashing.hashed_values
    # a release adds train.new_knob (default 7, the old behaviour) and its table entry
    monkeypatch.setattr(hashing, "hashed_values", lambda cfg: {**plain(cfg), "train.new_knob": 7})
    monkeypatch.setitem(HASH_DEFAULTS, "train.new_knob", 7)
    assert [hash_config(c) for c in configs] == before
    # ... and a config that turns it to another value is a new config; version 1 never wrote it
    monkeypatch.setattr(hashing, "hashed_values", lambda cfg: {**plain(cfg), "train.new_knob": 8})
    assert hash_config(configs[0]) != before[0]
    assert hashing.legacy_hash(configs[0]) is None


def test_changing_a_default_changes_exactly_the_configs_that_take_it(monkeypatch):
    """A release moves loss.label_smoothing's default from 0.1 to 0.2 (the table keeps 0.1)."""
    takes_default = RunConfig()  # had 0.1 implicitly; now gets 0.2
    explicit_old = RunConfig.model_validate({"loss": {"label_smoothing": 0.1}})
    other = RunConfig.model_validate({"optimizer": {"lr": 0.01}, "loss": {"label_smoothing": 0.1}})
    before = {name: hash_config(c) for name, c in
              (("takes_default", takes_default), ("explicit_old", explicit_old), ("other", other))}
    plain = hashing.hashed_values

    def moved(cfg):
        values = plain(cfg)
        if cfg is takes_default:  # what the new schema would resolve it to
            values["loss.label_smoothing"] = 0.2
        return values

    monkeypatch.setattr(hashing, "hashed_values", moved)
    assert hash_config(takes_default) != before["takes_default"]
    assert hash_config(explicit_old) == before["explicit_old"]
    assert hash_config(other) == before["other"]


@pytest.fixture
def v1_store(tracking_uri):
    """A store as the last version-1 release left it: finished variant runs with its hashes and params."""
    written = json.loads((FIXTURE / "store.json").read_text())
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment("hash_v1")
    ids = {}
    for run in written["runs"]:
        created = client.create_run(exp_id, run_name=f"{run['variant']}-seed{run['seed']}", tags={
            C.ROLE: "variant", C.VARIANT: run["variant"], C.SEED: str(run["seed"]),
            C.CONFIG_HASH: run["config_hash"], C.CONTRACT: "1"})
        params = [Param(k, v) for k, v in run["params"].items()]
        for start in range(0, len(params), 100):
            client.log_batch(created.info.run_id, params=params[start:start + 100])
        client.log_batch(created.info.run_id, metrics=[Metric("best_val_acc", 0.5, 0, 0)])
        client.set_terminated(created.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
        ids[run["variant"]] = (created.info.run_id, run["config_hash"])
    return client, ids


def test_a_store_of_the_previous_release_is_recognised(v1_store, tracking_uri, capsys):
    client, ids = v1_store
    suite = load_suite(FIXTURE / "spec.yaml")
    unchanged = ["base", "no_smoothing", "linear_head"]
    # `list` already sees them, before any run re-tags them
    from bioclf.cli import main

    assert main(["list", str(FIXTURE / "spec.yaml"), "--tracking-uri", tracking_uri]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:] if line.strip()}
    assert all("FINISHED" in listed[v] for v in unchanged) and "FINISHED" not in listed["default_pipeline"]
    lines = []
    result = run_suite(suite, variants=unchanged, tracking_uri=tracking_uri, quiet=True, echo=lines.append)
    assert [(o.variant, o.status) for o in result.outcomes] == [(v, "skipped") for v in unchanged]
    assert [o.run_id for o in result.outcomes] == [ids[v][0] for v in unchanged]
    assert sum("of an earlier release have the same config" in line for line in lines) == 3
    for variant, run in zip(unchanged, [r for r in suite.runs if r.variant in unchanged]):
        tags = client.get_run(ids[variant][0]).data.tags
        assert tags[C.CONFIG_HASH] == run.config_hash != ids[variant][1]  # re-tagged to version 2
        assert tags[C.CONFIG_HASH_V1] == ids[variant][1]
    # The row whose default changed (data.pipeline 'fast', removed) is a different config.
    default_row = next(r for r in suite.runs if r.variant == "default_pipeline")
    assert default_row.legacy_hash != ids["default_pipeline"][1]
    # A second run finds them by the new hash directly, with no re-tagging.
    lines.clear()
    again = run_suite(suite, variants=unchanged, tracking_uri=tracking_uri, quiet=True, echo=lines.append)
    assert all(o.status == "skipped" for o in again.outcomes)
    assert not any("earlier release" in line for line in lines)
