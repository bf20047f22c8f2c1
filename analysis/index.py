"""``index.md``: every figure and table of the report, in the report's order, on one page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from analysis.render import Table, markdown_body
from analysis.suite import SuiteData

SAFE = str.maketrans({"[": "(", "]": ")"})  # keep image alt texts from closing the link


@dataclass
class Section:
    title: str
    items: list[tuple[str, object]] = field(default_factory=list)  # ("figure", (caption, paths)) | ("table", Table)

    def figure(self, caption: str, paths: list[str], first: bool = False) -> None:
        """``paths``: the figure's files relative to the report folder, the one to show first."""
        item = ("figure", (caption, paths))
        self.items.insert(0, item) if first else self.items.append(item)

    def table(self, table: Table) -> None:
        self.items.append(("table", table))


def _figure_md(caption: str, paths: list[str]) -> str:
    links = " · ".join(f"[{p.rsplit('.', 1)[-1].upper()}]({p})" for p in paths[1:])
    return f"![{caption.translate(SAFE)}]({paths[0]})\n\n*{caption}*" + (f" ({links})" if links else "") + "\n"


def _table_md(table: Table, formats: tuple[str, ...]) -> str:
    names = {"csv": "CSV", "tex": "LaTeX", "md": "Markdown"}
    links = " · ".join(f"[{names.get(ext, ext)}](tables/{table.name}.{ext})" for ext in formats if ext != "md")
    return f"**{table.title}**" + (f" ({links})" if links else "") + f"\n\n{markdown_body(table)}"


def render_index(data: SuiteData, sections: list[Section], notes: list[str], when: datetime,
                 table_formats: tuple[str, ...] = ("md", "csv", "tex")) -> str:
    counts = data.runs["status"].value_counts()
    lines = [
        f"# Report: {data.experiment}",
        "",
        f"- Suite run: `{data.suite_run_id}` ({data.suite_status.lower() or 'status unknown'})",
        f"- Tracking URI: `{data.tracking_uri}`",
        f"- Baseline: `{data.baseline}`; variants: {len(data.variants)}; runs: {len(data.runs)} "
        f"({', '.join(f'{n} {s.lower()}' for s, n in counts.items())})",
        f"- Generated: {when:%Y-%m-%d %H:%M UTC} by `bioclf-report`, from the tracking store alone",
    ]
    if data.description:
        lines += ["", f"> {data.description}"]
    lines += ["", "## Contents", ""]
    lines += [f"{i}. {s.title}" for i, s in enumerate([s for s in sections if s.items], 1)]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    for section in sections:
        if not section.items:
            continue
        lines += ["", f"## {section.title}", ""]
        for kind, item in section.items:
            lines.append(_figure_md(*item) if kind == "figure" else _table_md(item, table_formats))
    return "\n".join(lines).rstrip() + "\n"


def write_index(path: Path, data: SuiteData, sections: list[Section], notes: list[str], when: datetime,
                table_formats: tuple[str, ...] = ("md", "csv", "tex")) -> Path:
    path.write_text(render_index(data, sections, notes, when, table_formats), encoding="utf-8")
    return path
