"""The tracking contract has one home (bioclf/tracking/contract.py): docs/tracking.md's tables
are generated from it, and no other module spells a tag name out."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bioclf.tracking import contract

ROOT = Path(__file__).resolve().parents[1]
TAG_NAMES = {value for name, value in vars(contract).items()
             if name.isupper() and isinstance(value, str) and value.startswith("bioclf.")}


def test_docs_tables_are_generated_from_the_contract():
    doc = (ROOT / "docs" / "tracking.md").read_text()
    assert contract.render_doc(doc) == doc, "regenerate: python -m bioclf.tracking.contract docs/tracking.md"
    assert f"Tracking contract (version {contract.CONTRACT_VERSION})" in doc
    # every table of the page is a generated block
    blocks = re.findall(r"<!-- contract:([a-z-]+) -->", doc)
    assert sorted(blocks) == sorted(contract.TABLES)


def test_a_contract_change_shows_in_the_rendered_page(monkeypatch):
    doc = (ROOT / "docs" / "tracking.md").read_text()
    monkeypatch.setattr(contract, "EPOCH_ROWS", contract.EPOCH_ROWS + ((("val_ece",), "calibration error"),))
    assert "`val_ece`" in contract.render_doc(doc) and "`val_ece`" not in doc


def test_every_bioclf_tag_the_docs_name_is_in_the_contract():
    named = set()
    for page in [*(ROOT / "docs").glob("*.md"), ROOT / "README.md"]:
        named |= set(re.findall(r"`(bioclf\.[a-z_]+(?:\.[a-z_]+)?)`", page.read_text()))
    # module paths (bioclf.tracking, bioclf.data.scan, ...) are not tags: only names shaped like ours
    tags = {n for n in named if n.count(".") == 1 and n.split(".")[1] not in {
        "tracking", "engine", "data", "models", "spec", "runner", "cli", "datacheck", "jobs", "executors",
        "predict", "fetch", "inventory", "registry", "errors", "lazy", "claims"}}
    tags |= {n for n in named if n.startswith("bioclf.data.") and n.split(".")[2] in ("pipeline", "train_stages",
                                                                                      "eval_stages")}
    assert tags <= TAG_NAMES, sorted(tags - TAG_NAMES)


def test_no_module_spells_a_tag_name_out():
    """Tag names are written once, in the contract; everything else imports them."""
    offenders = []
    for folder in ("bioclf", "analysis"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "contract.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if re.match(r'\s*"\w+": "bioclf\.[\w.]+",$', line):
                    continue  # a lazy-export map names modules (bioclf.data.pipeline is one too)
                for tag in TAG_NAMES:
                    if f'"{tag}"' in line or f"'{tag}'" in line:
                        offenders.append(f"{path.relative_to(ROOT)}:{number}: {tag}")
    assert not offenders, offenders


def test_the_contract_imports_neither_mlflow_nor_torch():
    code = ("import sys, bioclf.tracking.contract, bioclf.tracking.uri; "
            "print(sorted(m for m in ('mlflow', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_metric_groups_do_not_overlap():
    groups = [contract.EPOCH_METRICS, contract.SUMMARY_METRICS, contract.COST_METRICS, contract.CONDITIONAL_METRICS]
    names = [name for group in groups for name in group]
    assert len(names) == len(set(names))
