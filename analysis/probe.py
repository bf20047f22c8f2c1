"""Has anything a report is drawn from changed since it was built? A read-only look at a local
SQLite tracking store, without MLflow.

Importing MLflow and opening its SQLite store take 3 s or more before the first run is read; a
``bioclf-report`` whose reports are all current should not pay that. For each experiment to
report on, this module hashes, straight from the database file, everything the report reads
through MLflow (``analysis.store``): the experiment's row and tags, every row of its runs, their
tags, params, latest metrics and a summary of every metric history (count, last timestamp, sums
of steps and values), and the size and modification time of the artifacts the report downloads
(``suite.json``, ``history.csv``, ``predictions/val.csv``, ``classes.csv``). Equal fingerprints:
nothing the report reads has changed.

It only ever answers "unchanged" when it is sure: for anything else (not a local SQLite store, a
query parameter in the URI, artifacts that are not local folders, a schema revision it does not
know (sqlite_view.KNOWN_REVISIONS), an experiment name held twice, an experiment without a
suite) it answers None, and the CLI reads
the store through MLflow as before. ``tests/test_report_cache_probe.py`` checks that logging a
metric, a tag, a run or an artifact changes the fingerprint and that building and logging a
report does not.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from bioclf.tracking import contract as C
from bioclf.tracking.sqlite_view import connect_read_only, local_folder, open_known_store

# The artifacts analysis.store reads from a run; a change to any of them may change the report.
READ_ARTIFACTS = (C.SUITE_MANIFEST, C.HISTORY, C.PREDICTIONS, C.CLASSES, C.VAL_PROBS, C.TAXONOMY)


def fingerprints(uri: str, experiments: list[str] | None) -> dict[str, str] | None:
    """``{experiment: fingerprint}`` for the named experiments, or for every active experiment
    with a suite run (in the order the CLI reports them); None when this module cannot tell."""
    # Only a schema revision that was checked: another may keep what a report reads elsewhere.
    con = open_known_store(uri, {}, connect_read_only)
    if con is None:
        return None
    try:
        ids = _targets(con, experiments)
        if not ids:
            return None
        prints = {}
        for name, experiment_id in ids:
            fp = _experiment_fingerprint(con, experiment_id)
            if fp is None:
                return None
            prints[name] = fp
        return prints
    except (sqlite3.Error, OSError, ValueError):
        return None  # a schema this module does not know, a locked or damaged file: ask MLflow
    finally:
        con.close()


def _targets(con, experiments: list[str] | None) -> list[tuple[str, int]]:
    """(name, id) of the experiments to report on, as ``analysis.cli`` resolves them; [] when one
    named is missing, deleted, ambiguous or has no suite run (the CLI says why, through MLflow)."""
    rows = con.execute("SELECT name, experiment_id FROM experiments WHERE lifecycle_stage = 'active'").fetchall()
    names = [name for name, _ in rows]
    if len(set(names)) != len(names):  # the same name in two workspaces: which one MLflow reads is its business
        return []
    with_suite = {name for (name,) in con.execute(
        "SELECT DISTINCT e.name FROM experiments e JOIN runs r ON r.experiment_id = e.experiment_id "
        "JOIN tags t ON t.run_uuid = r.run_uuid WHERE e.lifecycle_stage = 'active' AND "
        "r.lifecycle_stage = 'active' AND t.key = ? AND t.value = ?", (C.ROLE, C.ROLE_SUITE))}
    by_name = dict(rows)
    wanted = list(experiments) if experiments else sorted(with_suite)
    if not wanted or any(name not in with_suite for name in wanted):
        return []
    return [(name, by_name[name]) for name in wanted]


# What bioclf-report itself writes to the suite run (the ablation table as metrics and verdict
# tags): not read by a report, so left out of the fingerprint; else logging a report would
# make the next call rebuild it.
_OWN_TAGS = f"t.key NOT GLOB '{C.VERDICT_PREFIX}*'"
_OWN_METRICS = " AND ".join(f"m.key NOT GLOB '*/{name}'" for name in C.SUITE_TABLE_METRICS)

# Every row the report's reading depends on, for one experiment (``?``), in a fixed order.
_QUERIES = (
    "SELECT * FROM experiments WHERE experiment_id = ?",
    "SELECT * FROM experiment_tags WHERE experiment_id = ? ORDER BY key",
    "SELECT * FROM runs WHERE experiment_id = ? ORDER BY run_uuid",
    "SELECT t.run_uuid, t.key, t.value FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
    f"WHERE r.experiment_id = ? AND {_OWN_TAGS} ORDER BY t.run_uuid, t.key",
    "SELECT p.run_uuid, p.key, p.value FROM params p JOIN runs r ON r.run_uuid = p.run_uuid "
    "WHERE r.experiment_id = ? ORDER BY p.run_uuid, p.key",
    "SELECT m.run_uuid, m.key, m.value, m.timestamp, m.step, m.is_nan FROM latest_metrics m "
    f"JOIN runs r ON r.run_uuid = m.run_uuid WHERE r.experiment_id = ? AND {_OWN_METRICS} "
    "ORDER BY m.run_uuid, m.key",
    # Whole histories are read only for runs without history.csv; a summary of each catches any
    # metric logged since (a new row changes its count and its last timestamp at least).
    "SELECT m.run_uuid, m.key, COUNT(*), MIN(m.timestamp), MAX(m.timestamp), MIN(m.step), MAX(m.step), "
    "SUM(m.step), SUM(m.value), SUM(m.value * m.step), SUM(m.is_nan) FROM metrics m "
    f"JOIN runs r ON r.run_uuid = m.run_uuid WHERE r.experiment_id = ? AND {_OWN_METRICS} "
    "GROUP BY m.run_uuid, m.key ORDER BY m.run_uuid, m.key",
)


def _experiment_fingerprint(con, experiment_id: int) -> str | None:
    h = hashlib.sha256()
    for sql in _QUERIES:
        cursor = con.execute(sql, (experiment_id,))
        h.update(repr([d[0] for d in cursor.description]).encode())
        for row in cursor:
            h.update(repr(row).encode())
    for run_uuid, artifact_uri in con.execute(
            "SELECT run_uuid, artifact_uri FROM runs WHERE experiment_id = ? ORDER BY run_uuid", (experiment_id,)):
        folder = local_folder(artifact_uri)
        if folder is None:
            return None
        for name in READ_ARTIFACTS:
            h.update(repr((run_uuid, name, _stat(folder / name))).encode())
    return h.hexdigest()


def _stat(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns)
