"""``index.html``: the report as one self-contained page, readable where it is logged.

MLflow's artifact viewer shows an HTML artifact on its own, without the files beside it, so
nothing here is a relative link: figures are embedded (PNG as base64), tables are HTML, and each
table's CSV is a ``data:`` download. Same sections, in the same order, as ``index.md``. Costs
about 1.4x the PNG bytes (base64).
"""

from __future__ import annotations

import base64
import html
from datetime import datetime
from pathlib import Path

from analysis.index import Section
from analysis.render import Table
from analysis.suite import SuiteData

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1280px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { padding: .25em .6em; border-bottom: 1px solid #e5e5e5; text-align: left; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { white-space: normal; max-width: 24em; overflow-wrap: break-word; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: .9em; } .meta li { margin: .1em 0; }
.download { font-size: .85em; margin-left: .6em; } .wide { overflow-x: auto; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _anchor(title: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")


def _figure(folder: Path, caption: str, paths: list[str]) -> str:
    png = next((p for p in paths if p.endswith(".png")), None)
    if png is None or not (folder / png).is_file():
        return f'<p class="note">Figure not drawn: {_e(caption)}</p>'
    data = base64.b64encode((folder / png).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _table(table: Table) -> str:
    head = "".join(f'<th class="{"num" if c.numeric else "text"}">{_e(c.header)}</th>' for c in table.columns)
    rows = table.display_rows() or [["(no rows)"] + [""] * (len(table.columns) - 1)]
    body = "".join("<tr>" + "".join(f'<td class="{"num" if c.numeric else "text"}">{_e(v)}</td>'
                                    for c, v in zip(table.columns, row)) + "</tr>" for row in rows)
    csv = base64.b64encode(table.data.to_csv(index=False).encode("utf-8")).decode("ascii")
    download = (f'<a class="download" download="{_e(table.name)}.csv" '
                f'href="data:text/csv;base64,{csv}">CSV (exact values)</a>')
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in table.notes)
    return (f"<p><strong>{_e(table.title)}</strong>{download}</p>"
            f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{notes}')


def render_html(data: SuiteData, sections: list[Section], notes: list[str], when: datetime, folder: Path) -> str:
    """The page; ``folder``: the report folder the figures were drawn into."""
    counts = data.runs["status"].value_counts()
    shown = [s for s in sections if s.items]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Report: {_e(data.experiment)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Report: {_e(data.experiment)}</h1>",
        '<ul class="meta">',
        f"<li>Suite run: <code>{_e(data.suite_run_id)}</code> ({_e(data.suite_status.lower() or 'status unknown')})</li>",
        f"<li>Tracking URI: <code>{_e(data.tracking_uri)}</code></li>",
        f"<li>Baseline: <code>{_e(data.baseline)}</code>; variants: {len(data.variants)}; runs: {len(data.runs)} "
        f"({_e(', '.join(f'{n} {s.lower()}' for s, n in counts.items()))})</li>",
        f"<li>Generated: {when:%Y-%m-%d %H:%M UTC} by <code>bioclf-report</code>, from the tracking store alone</li>",
        "</ul>",
    ]
    if data.description:
        parts.append(f"<blockquote>{_e(data.description)}</blockquote>")
    parts.append("<h2>Contents</h2><ol>" + "".join(f'<li><a href="#{_anchor(s.title)}">{_e(s.title)}</a></li>'
                                                    for s in shown) + "</ol>")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    for section in shown:
        parts.append(f'<h2 id="{_anchor(section.title)}">{_e(section.title)}</h2>')
        for kind, item in section.items:
            parts.append(_figure(folder, *item) if kind == "figure" else _table(item))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(path: Path, data: SuiteData, sections: list[Section], notes: list[str], when: datetime) -> Path:
    path.write_text(render_html(data, sections, notes, when, path.parent), encoding="utf-8")
    return path
