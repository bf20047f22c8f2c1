"""Tables as files: CSV (exact values), Markdown and LaTeX (formatted for a write-up).

A ``Table`` keeps two views of the same rows: ``data``, the raw values written to CSV as they
are in the store (accuracies as fractions, exact parameter counts), and ``columns``, which of
those the Markdown / LaTeX show and how (percent with one decimal, millions, ...). A later
module (statistics) can add a column to ``data`` and a ``Column`` to show it.
No tabulate / jinja2: the two formats are a few lines each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

DASH = "—"


@dataclass
class Column:
    key: str  # column of Table.data
    header: str
    fmt: str = "text"  # see FORMATS
    std_key: str | None = None  # "pct" with a std column: shown as "mean ± std"
    blank_when: str | None = None  # a bool column of data: show "—" where it is true

    @property
    def numeric(self) -> bool:
        return self.fmt != "text"


@dataclass
class Table:
    name: str  # file stem, e.g. "table4_ablation"
    title: str
    data: pd.DataFrame
    columns: list[Column]
    notes: list[str] = field(default_factory=list)

    def display_rows(self) -> list[list[str]]:
        rows = []
        for _, rec in self.data.iterrows():
            rows.append([_cell(rec, col) for col in self.columns])
        return rows


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT


def _epochs(v: float) -> str:
    return f"{int(round(v))}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"


FORMATS = {
    "text": str,
    "int": lambda v: f"{int(v)}",
    "pct": lambda v: f"{100 * v:.1f}",
    "pp": lambda v: signed(v, "{:+.1f}"),
    "millions": lambda v: f"{v / 1e6:.2f}",
    "ratio": lambda v: f"{v:.2f}×",
    "loss": lambda v: f"{v:.4f}",
    "lr": lambda v: f"{v:.2e}",
    "epochs": _epochs,
    "1dp": lambda v: f"{v:.1f}",  # one decimal: seconds, MB, ms
    "2dp": lambda v: f"{v:.2f}",  # tree distances
    "p": lambda v: "<0.001" if v < 0.001 else f"{v:.3f}",
}


def signed(value: float, fmt: str) -> str:
    """``value`` in a signed format such as "{:+.1f}", "+0.0" rather than "-0.0" when it rounds
    to zero (a Δ of -0.04 points is no Δ, and should not read as a loss)."""
    text = fmt.format(value)
    return fmt.format(0.0) if float(text) == 0 else text


def format_value(value, fmt: str) -> str:
    if _missing(value):
        return DASH
    return FORMATS[fmt](value)


def _cell(rec: pd.Series, col: Column) -> str:
    if col.blank_when and bool(rec.get(col.blank_when)):
        return DASH
    text = format_value(rec.get(col.key), col.fmt)
    if col.std_key and text != DASH and not _missing(rec.get(col.std_key)):
        text += f" ± {format_value(rec.get(col.std_key), col.fmt)}"
    return text


# ---------------------------------------------------------------- Markdown


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_body(table: Table) -> str:
    """The table and its notes, without the title (index.md puts the title in a heading)."""
    head = "| " + " | ".join(_md_escape(c.header) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if c.numeric else ":---" for c in table.columns) + "|"
    body = ["| " + " | ".join(_md_escape(v) for v in row) + " |" for row in table.display_rows()]
    if not body:
        body = ["| " + " | ".join(["(no rows)"] + [""] * (len(table.columns) - 1)) + " |"]
    notes = [f"\n{_md_escape(n)}" for n in table.notes]
    return "\n".join([head, rule, *body]) + "\n" + "\n".join(notes) + ("\n" if notes else "")


def to_markdown(table: Table) -> str:
    return f"**{table.title}**\n\n{markdown_body(table)}"


# ---------------------------------------------------------------- LaTeX

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"±": r"$\pm$", "×": r"$\times$", "Δ": r"$\Delta$", "→": r"$\rightarrow$", "—": "---",
                  "–": "--", "≥": r"$\geq$", "≤": r"$\leq$"}


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    for uni, tex in _LATEX_UNICODE.items():
        out = out.replace(uni, tex)
    return out


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    spec = "".join("r" if c.numeric else "l" for c in table.columns)
    lines = [r"\begin{table}[ht]", r"\centering", f"\\caption{{{latex_escape(table.title)}}}",
             f"\\label{{tab:{table.name}}}", f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(c.header) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in table.display_rows()]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [f"\\par\\smallskip{{\\footnotesize {latex_escape(n)}}}" for n in table.notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- files


def write_table(table: Table, folder: Path, formats: tuple[str, ...] = ("md", "csv", "tex")) -> list[Path]:
    """``<name>.md``, ``<name>.csv`` (raw values, full precision) and ``<name>.tex``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for ext in formats:
        path = folder / f"{table.name}.{ext}"
        if ext == "csv":
            table.data.to_csv(path, index=False)
        else:
            path.write_text(to_markdown(table) if ext == "md" else to_latex(table), encoding="utf-8")
        written.append(path)
    return written
