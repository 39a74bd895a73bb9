"""sweep.html and sweep.md: the best checkpoint, a line chart of each checkpoint's means, and the tables.

The chart (`launch.sweep.chart`) is inline SVG, one line per category plus the overall mean, each with its 95 %
interval as a band. The page is complete without its script, which only shows and hides lines by their
checkboxes. It opens offline and escapes every text (checkpoint and category names may be in any script, or hold
markup) under the same policy as report.html (`shards.report.page`). Standard library only.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from launch.sweep.chart import chart
from shards.report.numbers import interval, number
from shards.report.page import document, escape
from shards.report.page import markdown_cell as cell

STYLE = """
td.text{text-align:left;overflow-wrap:anywhere;max-width:320px}.refused{color:#6e6e73}.best{font-weight:700}
.statement{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px #0002}
#checkpoints,#pairs,.chart{overflow-x:auto}#checkpoints td{white-space:nowrap}.series-pick label{margin-right:14px;white-space:nowrap}
.swatch{display:inline-block;width:14px;height:4px;vertical-align:middle;margin:0 4px}
"""

SCRIPT = """
const boxes = Array.from(document.querySelectorAll("#series-pick input[type=checkbox]"));
function show() {
  for (const box of boxes) {
    const line = document.querySelector('g.series[data-series="' + box.dataset.series + '"]');
    line.style.display = box.checked ? "" : "none";
  }
}
boxes.forEach(box => box.addEventListener("change", show));
show();
document.body.dataset.ready = "true";
"""


def build_page(result: dict[str, Any]) -> str:
    """sweep.html, from sweep.json's content."""
    return document("Checkpoint sweep", STYLE, [
        "<header><h1>Checkpoint sweep</h1>", _summary(result), "</header>", chart(result), _checkpoints(result),
        _pairs(result)], SCRIPT)


def _summary(result: dict[str, Any]) -> str:
    base = "none" if result["base"] is None else escape(result["base"])
    rule = "by training step" if result["order"] == "step" else "by name (natural sort)"
    return (f'<p>{len(result["checkpoints"])} checkpoints, ordered {rule}; base model: {base}; judge: '
            f'{escape(result["judge"])}.</p><p class="statement" id="best">{escape(result["best"]["statement"])}</p>')


def _link(row: dict[str, Any]) -> str:
    name = escape(row["name"]) + (" (base)" if row["base"] else "")
    if row["report"] is None:
        return f"{name} <small>(no report.html)</small>"
    return f'<a href="{escape(urllib.parse.quote(row["report"]))}">{name}</a>'


def _share(result: dict[str, Any], name: str) -> str:
    shares = result["best"]["best_in_resamples"]
    return "–" if shares is None or name not in shares else f"{shares[name]:.0%}"


def _mean(figures: dict[str, Any] | None, key: str = "mean") -> str:
    if figures is None:
        return "–"
    return f"{number(figures[key])} {interval(figures[f'{key}_ci95'])}"


def _checkpoints(result: dict[str, Any]) -> str:
    cats, best = result["categories"], result["best"]["name"]
    head = "".join(f"<th>{escape(c)}</th>" for c in cats)
    rows = "".join(
        f'<tr class="checkpoint{" best" if r["name"] == best else ""}" data-checkpoint="{escape(r["name"])}">'
        f'<td class="text">{_link(r)}</td><td>{"" if r["step"] is None else r["step"]}</td>'
        f"<td>{_mean(r, 'mean_over_samples')}</td><td>{_mean(r, 'mean_over_categories')}</td>"
        f"<td>{r['counts']['scored']} of {r['counts']['count']}</td><td>{r['counts']['unparsed']}</td>"
        f"<td>{r['counts']['failed']}</td><td>{_share(result, r['name'])}</td>"
        + "".join(f"<td>{_mean(r['categories'].get(c))}</td>" for c in cats) + "</tr>"
        for r in result["checkpoints"])
    return ('<section id="checkpoints"><h2>Checkpoints (means with 95% bootstrap intervals)</h2><table><tr>'
            "<th>checkpoint</th><th>step</th><th>mean over samples</th><th>mean over categories</th><th>scored</th>"
            f"<th>unparsed</th><th>failed</th><th>best in resamples</th>{head}</tr>{rows}</table></section>")


def _against(pair: dict[str, Any]) -> str:
    """What B is to A: the base model, A's predecessor, or both."""
    return ", ".join({"base": "base model", "previous": "previous"}[why] for why in pair["against"])


def _pairs(result: dict[str, Any]) -> str:
    rows = []
    for p in result["pairs"]:
        label = f'<td>{escape(p["a"])}</td><td class="text">{escape(p["b"])} ({_against(p)})</td>'
        if "refused" in p:
            why = "; ".join(p["differences"] + p["data_differences"])
            rows.append(f'<tr class="refused">{label}<td colspan="6">{escape(p["refused"])}: {escape(why)}</td></tr>')
        elif "note" in p:
            rows.append(f'<tr class="refused">{label}<td>all</td><td>0</td><td colspan="4">{escape(p["note"])}'
                        "</td></tr>")
        else:
            rows += [f'<tr class="pair" data-scope="{escape(scope)}">{label}<td>{escape(scope)}</td><td>{f["n"]}</td>'
                     f"<td>{number(f['mean_difference'])}</td><td>{interval(f['mean_difference_ci95'], 3)}</td>"
                     f"<td>{number(f['p_value'], 4)}</td><td>{f['wins']} / {f['ties']} / {f['losses']}</td></tr>"
                     for scope, f in [("all", p["overall"]), *p["categories"].items()]]
    return ('<section id="pairs"><h2>Paired differences (checkpoint minus the other, samples both scored)</h2>'
            "<table><tr><th>checkpoint</th><th>against</th><th>scope</th><th>n</th><th>mean difference</th>"
            "<th>95% CI</th><th>p (sign flip)</th><th>wins / ties / losses</th></tr>"
            f"{''.join(rows)}</table></section>")


def markdown(result: dict[str, Any]) -> str:
    """sweep.md: the best checkpoint, the checkpoints' table and the paired table."""
    cats = result["categories"]
    lines = ["# Checkpoint sweep", "", result["best"]["statement"], "", "## Checkpoints", "",
             "| checkpoint | step | mean over samples | mean over categories | scored | unparsed | failed | "
             "best in resamples | " + " | ".join(map(cell, cats)) + " |",
             "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(cats)]
    for r in result["checkpoints"]:
        name = cell(r["name"] + (" (base)" if r["base"] else ""))
        link = f"[{name}]({urllib.parse.quote(r['report'])})" if r["report"] else name
        lines.append(f"| {link} | {'' if r['step'] is None else r['step']} | {_mean(r, 'mean_over_samples')} | "
                     f"{_mean(r, 'mean_over_categories')} | {r['counts']['scored']} of {r['counts']['count']} | "
                     f"{r['counts']['unparsed']} | {r['counts']['failed']} | {_share(result, r['name'])} | "
                     + " | ".join(_mean(r["categories"].get(c)) for c in cats) + " |")
    lines += ["", "## Paired differences (checkpoint minus the other, samples both scored)", "",
              "| checkpoint | against | scope | n | mean difference | 95% CI | p | wins / ties / losses |",
              "|---|---|---|---:|---:|---:|---:|---|"]
    for p in result["pairs"]:
        label = f"| {cell(p['a'])} | {cell(p['b'])} ({_against(p)}) |"
        if "refused" in p:
            why = "; ".join(p["differences"] + p["data_differences"])
            lines.append(f"{label} – | | {cell(p['refused'] + ': ' + why)} | | | |")
        elif "note" in p:
            lines.append(f"{label} – | 0 | {cell(p['note'])} | | | |")
        else:
            lines += [f"{label} {cell(scope)} | {f['n']} | {number(f['mean_difference'])} | "
                      f"{interval(f['mean_difference_ci95'], 3)} | {number(f['p_value'], 4)} | "
                      f"{f['wins']} / {f['ties']} / {f['losses']} |"
                      for scope, f in [("all", p["overall"]), *p["categories"].items()]]
    return "\n".join(lines) + "\n"
