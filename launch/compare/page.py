"""compare.html: the leaderboard, the paired table, then every sample with the original beside each run's edit.

Rows come largest disagreement first (even without the script); the script only filters by category. The images
are the runs' own report thumbnails (thumbnails.json), so nothing here decodes an image: the page is built with
the standard library. It opens offline and escapes every text, under the same policy as report.html.
"""

from __future__ import annotations

from typing import Any

from shards.report.numbers import interval, number
from shards.report.page import document, escape

STYLE = """
td.text{text-align:left;overflow-wrap:anywhere;max-width:280px}.warn{color:#b00020}.refused{color:#6e6e73}
.rows{display:flex;flex-direction:column;gap:10px}
.row{background:#fff;border-radius:8px;padding:8px;box-shadow:0 1px 2px #0002;content-visibility:auto;
contain-intrinsic-size:auto 260px}
.row[hidden]{display:none}
.strip{display:flex;gap:8px;overflow-x:auto}.strip figure{margin:0;text-align:center;min-width:160px}
.strip img{max-width:220px;max-height:220px;border-radius:4px;background:#eee}
figcaption{font-size:12px;color:#6e6e73}.best{font-weight:700}
.missing{display:flex;align-items:center;justify-content:center;width:160px;height:120px;background:#eee}
"""

SCRIPT = """
const rows = Array.from(document.querySelectorAll("article.row"));
const pick = document.getElementById("category");
function show() {
  let shown = 0;
  for (const row of rows) {
    row.hidden = !(pick.value === "" || row.dataset.category === pick.value);
    shown += row.hidden ? 0 : 1;
  }
  document.getElementById("shown").textContent = shown + " of " + rows.length + " samples";
}
pick.addEventListener("change", show);
show();
document.body.dataset.ready = "true";
"""


def _ci(bounds: list[float] | None, digits: int = 2) -> str:
    """An interval after its mean, or nothing when there is none."""
    return "" if bounds is None else " " + interval(bounds, digits)


def build_page(result: dict[str, Any], runs: dict[str, dict[str, Any]]) -> str:
    """The whole page, from compare.json's content and the loaded runs (for their thumbnails)."""
    return document("Run comparison", STYLE, [
        "<header><h1>Run comparison</h1></header>", _leaderboard(result), _pairs(result),
        _controls(result), '<main class="rows" id="rows">',
        *(_row(sample, runs) for sample in result["samples"]), "</main>"], SCRIPT)


def _leaderboard(result: dict[str, Any]) -> str:
    cats = result["categories"]
    head = "".join(f"<th>{escape(c)}</th>" for c in cats)
    rows = "".join(
        f"<tr><td>{escape(r['name'])}</td><td class=\"text\">{escape(r['editor'])}</td>"
        f"<td class=\"text\">{escape(r['judge'])} ({escape(r['scoring_mode'])})</td>"
        f"<td>{number(r['mean_over_samples'])}{_ci(r['mean_over_samples_ci95'])}</td>"
        f"<td>{number(r['mean_over_categories'])}{_ci(r['mean_over_categories_ci95'])}</td>"
        f"<td>{r['counts']['scored']} of {r['counts']['count']}</td>"
        + "".join(f"<td>{number(r['categories'].get(c, {}).get('mean'))}{_ci(r['categories'].get(c, {}).get('mean_ci95'))}"
                  f"</td>" for c in cats) + "</tr>" for r in result["runs"])
    return ('<section id="leaderboard"><h2>Leaderboard (means with 95% bootstrap intervals)</h2><table><tr>'
            "<th>run</th><th>editor</th><th>judge</th><th>mean over samples</th><th>mean over categories</th>"
            f"<th>scored</th>{head}</tr>{rows}</table></section>")


def _pairs(result: dict[str, Any]) -> str:
    rows = []
    for p in result["pairs"]:
        label = escape(f"{p['a']} − {p['b']}")
        if "refused" in p:
            rows.append(f'<tr class="refused"><td>{label}</td><td colspan="6">{escape(p["refused"])}: '
                        f'{escape("; ".join(p["differences"] + p["data_differences"]))}</td></tr>')
            continue
        if "note" in p:
            rows.append(f'<tr class="refused"><td>{label}</td><td>all</td><td>0</td><td colspan="4">'
                        f'{escape(p["note"])}</td></tr>')
            continue
        differ = " and ".join(w for w, found in (("judging", p["differences"]), ("data", p["data_differences"]))
                              if found)
        warn = f' <span class="warn" title="{escape(p["warning"])}">⚠ different {differ}</span>' \
            if "warning" in p else ""
        for scope, f in [("all", p["overall"]), *p["categories"].items()]:
            rows.append(f'<tr class="pair" data-scope="{escape(scope)}"><td>{label}{warn}</td><td>{escape(scope)}'
                        f"</td><td>{f['n']}</td><td>{number(f['mean_difference'])}</td>"
                        f"<td>{interval(f['mean_difference_ci95'], 3)}</td><td>{number(f['p_value'], 4)}</td>"
                        f"<td>{f['wins']} / {f['ties']} / {f['losses']}</td></tr>")
    return ('<section id="pairs"><h2>Paired differences (first minus second, samples both scored)</h2><table><tr>'
            "<th>pair</th><th>scope</th><th>n</th><th>mean difference</th><th>95% CI</th><th>p (sign flip)</th>"
            f"<th>wins / ties / losses</th></tr>{''.join(rows)}</table></section>")


def _controls(result: dict[str, Any]) -> str:
    options = "".join(f'<option value="{escape(c)}">{escape(c)}</option>' for c in result["categories"])
    return ('<section class="controls"><label>Category <select id="category"><option value="">all</option>'
            f'{options}</select></label><span id="shown">{len(result["samples"])} samples</span>'
            "<span>largest disagreement first</span></section>")


def _img(uri: str | None, caption: str, best: bool = False) -> str:
    image = f'<img src="{escape(uri)}" alt="{escape(caption)}" loading="lazy">' if uri else \
        '<div class="missing">no image</div>'
    return f'<figure>{image}<figcaption class="{"best" if best else ""}">{escape(caption)}</figcaption></figure>'


def _row(sample: dict[str, Any], runs: dict[str, dict[str, Any]]) -> str:
    original = next((r["thumbnails"].get(sample["id"], {}).get("original") for r in runs.values()
                     if r["thumbnails"].get(sample["id"], {}).get("original")), None)
    values = [v for v in sample["scores"].values() if v is not None]
    top = max(values) if values else None
    edits = "".join(_img(runs[name]["thumbnails"].get(sample["id"], {}).get("edited"), f"{name}: {number(score, 2)}",
                         score is not None and score == top and len(values) > 1)
                    for name, score in sample["scores"].items())
    return (f'<article class="row" data-category="{escape(sample["category"])}" '
            f'data-disagreement="{number(sample["disagreement"])}"><div><code>{escape(sample["id"])}</code> '
            f'<span>{escape(sample["category"])}</span> — {escape(sample["instruction"] or "")} '
            f'(disagreement {number(sample["disagreement"], 2)})</div><div class="strip">{_img(original, "original")}'
            f"{edits}</div></article>")
