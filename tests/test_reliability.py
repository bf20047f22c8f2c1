"""What a crowded or damaged suite must still get right: claims per store, busy is not done,
check-data and run agree on bad data, a skipped path is said once, leftovers are reported."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest
from PIL import Image

from bioclf.claims import claim
from bioclf.cli import build_parser, main
from bioclf.data.folder import list_images
from bioclf.jobs import Status
from bioclf.runner import run_suite, summary_table
from bioclf.spec import load_suite
from bioclf.tracking import Tracker
from conftest import TINY, write_spec

ONE_EPOCH = dict(TINY, train={"epochs": 1}, variants={"only": {}}, baseline="only")


def test_claims_are_per_store_and_busy_is_not_reported_as_done(tmp_path, capsys):
    """Two stores in one folder share its scratch space but not their claims; a config another
    process holds is reported as not trained, and the command exits 3."""
    spec = write_spec(tmp_path, ONE_EPOCH)
    suite = load_suite(spec)
    first, second = (f"sqlite:///{tmp_path / name}" for name in ("first.db", "second.db"))
    tracker = Tracker(first)
    assert tracker.work_root() == Tracker(second).work_root()  # the same folder ...
    assert tracker.claim_key("x") != Tracker(second).claim_key("x")  # ... different claims
    key = tracker.claim_key(suite.runs[0].config_hash)
    with claim(tracker.work_root() / "claims", key) as held:
        assert held
        other_store = run_suite(suite, tracking_uri=second, quiet=True, echo=lambda line: None)
        assert [o.status for o in other_store.outcomes] == [Status.FINISHED]
        lines: list[str] = []
        crowded = run_suite(suite, tracking_uri=first, quiet=True, echo=lines.append)
        assert [o.status for o in crowded.outcomes] == [Status.BUSY] and crowded.not_trained
        summary = next(line for line in lines if " run(s): " in line)  # the table's last line
        assert "1 not trained: another process is training it" in summary and "all ok" not in summary
        assert main(["run", str(spec), "--quiet", "--tracking-uri", first]) == 3
    assert "not trained" in capsys.readouterr().out
    assert main(["run", str(spec), "--quiet", "--tracking-uri", first]) == 0  # free again: trained


def test_summary_counts_every_status():
    from bioclf.jobs import Outcome
    from bioclf.runner import SuiteResult

    result = SuiteResult("s", "p", [Outcome("a", 0, "h1", Status.FINISHED, "r1", 0.5),
                                    Outcome("b", 0, "h2", Status.SKIPPED, "r2", 0.6),
                                    Outcome("c", 0, "h3", Status.FAILED, "r3", error="boom")])
    last = summary_table(result).splitlines()[-1]
    assert last == "3 run(s): 1 trained, 1 already finished, 1 failed"


def _dataset(root: Path) -> Path:
    for split, n in (("train", 4), ("val", 2)):
        for c in ("a", "b"):
            for i in range(n):
                (root / split / c).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (24, 24), (40 * i, 100 if c == "a" else 200, 30)).save(root / split / c / f"{i}.jpg")
    return root


BAD_FILES = {
    "zero bytes": b"",
    "truncated": None,  # a real JPEG cut in half, made below
    "not an image": b"just some text, not a picture",
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_check_data_and_run_give_the_same_verdict(kind, tmp_path, capsys):
    root = _dataset(tmp_path / "data")
    payload = BAD_FILES[kind]
    if payload is None:
        payload = (root / "train/a/0.jpg").read_bytes()[:300]
    (root / "train/a/bad.jpg").write_bytes(payload)
    spec = write_spec(tmp_path, dict(ONE_EPOCH, data=dict(TINY["data"], source="folder", root=str(root))))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    assert main(["check-data", str(root), "--quiet", "--no-cache"]) == 2
    checked = capsys.readouterr().err.strip().splitlines()[-1]
    assert main(["run", str(spec), "--quiet", "--tracking-uri", uri]) == 2
    ran = capsys.readouterr().err.strip().splitlines()[-1]
    assert "1 unreadable image(s)" in checked and "bad.jpg" in checked
    assert checked.split("error: ", 1)[1] == ran.split("error: ", 1)[1]  # the same line

    assert main(["check-data", str(root), "--quiet", "--on-bad-image", "skip"]) == 0
    assert "a run leaves them out" in capsys.readouterr().out


def test_a_bad_test_image_is_a_warning_not_a_problem(tmp_path, capsys):
    root = _dataset(tmp_path / "data")
    (root / "test").mkdir()
    (root / "test" / "bad.jpg").write_bytes(b"")
    assert main(["check-data", str(root), "--quiet"]) == 0
    assert "training does not read them; predict needs --skip-bad" in capsys.readouterr().out


def test_a_symlink_loop_is_reported_once(tmp_path, caplog):
    root = _dataset(tmp_path / "data")
    (root / "train" / "a" / "loop").symlink_to(root / "train")
    with caplog.at_level(logging.WARNING, logger="bioclf.data.folder"):
        for _ in range(3):  # the data check, the scan and the loaders each list the folder
            images = list_images(root / "train")
    assert len(images) == 8
    assert sum("(a loop)" in r.getMessage() for r in caplog.records) == 1


def test_list_reports_scratch_left_over(tmp_path, capsys):
    spec = write_spec(tmp_path, ONE_EPOCH)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["run", str(spec), "--quiet", "--tracking-uri", uri]) == 0
    stale = Tracker(uri).work_root() / ("ab" * 16)
    (stale / "checkpoints").mkdir(parents=True)
    (stale / "checkpoints" / "best.pt").write_bytes(b"x" * 2_000_000)
    capsys.readouterr()
    assert main(["list", str(spec), "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "left over: 1 scratch folder(s) of runs that will never resume (abab" in out and "2.0 MB" in out


def test_every_argument_has_help_and_no_help_dangles():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"bioclf-exp {name} {action.dest}: no help"
            assert not action.help.rstrip().endswith(":"), f"bioclf-exp {name} {action.dest}: {action.help!r}"


def test_a_finished_config_retires_its_interrupted_runs(tmp_path):
    """A RUNNING run left by a dead process beside a FINISHED one of the same config will never
    resume: the next suite marks it KILLED and removes its scratch (list has nothing to report)."""
    spec = write_spec(tmp_path, ONE_EPOCH)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    suite = load_suite(spec)
    first = run_suite(suite, tracking_uri=uri, quiet=True, echo=lambda line: None)
    tracker = Tracker(uri)
    run = suite.runs[0]
    orphan = tracker.start_variant(tracker.experiment_id("tiny"), first.suite_run_id, variant=run.variant,
                                   seed=run.seed, config_hash=run.config_hash, suite_hash=suite.suite_hash, params={})
    (tracker.work_root() / orphan / "checkpoints").mkdir(parents=True)
    again = run_suite(suite, tracking_uri=uri, quiet=True, echo=lambda line: None)
    assert [o.status for o in again.outcomes] == [Status.SKIPPED]
    assert tracker.find_run(orphan).status == "KILLED"
    assert not (tracker.work_root() / orphan).exists() and tracker.scratch() == []
