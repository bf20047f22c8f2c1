"""The config reference (docs/config.md), generated from the schema so the two cannot drift.

Regenerate with ``python -m bioclf.spec.reference > docs/config.md``; a test fails when the
file and the schema disagree.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from bioclf.spec.schema import UNHASHED_FIELDS, RunConfig


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "")
    return text.replace("NoneType", "null").replace("Literal", "one of ")


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{json.dumps(value)}`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows: list[str] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += _rows(annotation, f"{key}.")
            continue
        note = " Not hashed." if key in UNHASHED_FIELDS and "hash" not in (field.description or "") else ""
        text = (field.description or "").replace("|", "\\|") + note
        rows.append(f"| `{key}` | {_type_name(annotation).replace('|', 'or')} | {_default(field)} | {text} |")
    return rows


def config_reference() -> str:
    lines = [
        "# Config reference",
        "",
        "Every key of a run's config, with its type, default and meaning. A spec sets any of them",
        "(nested, or dotted in `variants:` and `--set`); unknown keys are errors. Generated from",
        "`bioclf/spec/schema.py` by `python -m bioclf.spec.reference > docs/config.md`.",
        "",
        "Top-level spec keys besides the sections below: `extends` (a parent spec, relative to this",
        "file), `name` (the MLflow experiment), `description`, `baseline` (the row Δ is measured",
        "against; default the first variant), `seeds` (list of integers; each variant runs once per",
        "seed), `variants` (ordered mapping: row name -> overrides).",
        "",
    ]
    for section, field in RunConfig.model_fields.items():
        model = field.annotation
        lines += [f"## `{section}`", "", (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "), "",
                  "| key | type | default | meaning |", "|---|---|---|---|"]
        lines += _rows(model, f"{section}.")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(config_reference())
