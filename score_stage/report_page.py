"""report.html: one self-contained page to look at the results, every original beside its edit.

Opens offline: thumbnails are embedded JPEG data URIs, the chart is inline SVG, the few lines of script are inline,
and a Content-Security-Policy forbids loading anything else (and running any script but this one). Every text
that comes from the dataset, the config or the judge is HTML-escaped, so any category name, instruction or judge
answer shows as text, never as markup. Cards are rendered lowest score first (unscored first of all), so the page
is right before and without its script, which only filters and re-sorts.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from score_stage.leaderboards.section import protocol_line
from shards.report.numbers import interval, number
from shards.report.page import document, escape

THUMBNAIL_SIDE = 256  # px, the longer side: about 10 KB a JPEG, so 1,000 samples stay near 20 MB

STYLE = """
dl.summary{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}
dt{color:#6e6e73}dd{margin:0;overflow-wrap:anywhere}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:12px}
.card{background:#fff;border-radius:8px;padding:10px;box-shadow:0 1px 2px #0002;content-visibility:auto;
contain-intrinsic-size:auto 420px}
.card[hidden]{display:none}
.images{display:flex;gap:8px}.images figure{margin:0;flex:1;text-align:center}
.images img{max-width:100%;max-height:256px;border-radius:4px;background:#eee}
.missing{display:flex;align-items:center;justify-content:center;height:120px;background:#eee;color:#6e6e73}
figcaption{font-size:12px;color:#6e6e73}
.meta{display:flex;gap:10px;align-items:baseline;margin:6px 0}
.score{font-size:20px;font-weight:600}.tag{background:#e8e8ed;border-radius:4px;padding:0 6px}
.status-unparsed{background:#ffe3b3}.status-failed{background:#ffc9c9}
.dim{border-top:1px solid #eee;padding-top:4px;margin-top:4px}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f5f5f7;padding:6px;margin:4px 0;max-height:160px;
overflow:auto;font-size:12px}
"""

SCRIPT = """
const cards = Array.from(document.querySelectorAll("article.card"));
const list = document.getElementById("cards");
const pick = {category: document.getElementById("category"), status: document.getElementById("status"),
              order: document.getElementById("order")};
function score(card) { return card.dataset.score === "" ? -1 : Number(card.dataset.score); }
function show() {
  const order = pick.order.value;
  const sorted = cards.slice().sort((a, b) => order === "dataset" ? a.dataset.order - b.dataset.order
    : (order === "high" ? score(b) - score(a) : score(a) - score(b)) || a.dataset.order - b.dataset.order);
  let shown = 0;
  for (const card of sorted) {
    card.hidden = !((pick.category.value === "" || card.dataset.category === pick.category.value) &&
                    (pick.status.value === "" || card.dataset.status === pick.status.value));
    shown += card.hidden ? 0 : 1;
    list.appendChild(card);
  }
  document.getElementById("shown").textContent = shown + " of " + cards.length + " samples";
}
Object.values(pick).forEach(select => select.addEventListener("change", show));
show();
document.body.dataset.ready = "true";
"""


def thumbnail(image: Image.Image, side: int = THUMBNAIL_SIDE) -> str:
    """A JPEG data URI of `image` scaled to fit `side` x `side` pixels."""
    small = image.convert("RGB")
    small.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=80, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def build_html(report: dict[str, Any], thumbnails: dict[str, dict[str, str | None]]) -> str:
    """The whole page.

    Args:
        report: The report.json content.
        thumbnails: Sample id -> {"original": data URI or None, "edited": data URI or None}.
    """
    samples = sorted(enumerate(report["samples"]),
                     key=lambda item: (-1 if item[1]["score"] is None else item[1]["score"], item[0]))
    return document("Edit benchmark report", STYLE, [
        _summary(report), _official(report), _chart(report), _agreement(report), _controls(report),
        '<main id="cards">', *(_card(i, s, thumbnails.get(s["id"], {})) for i, s in samples), "</main>"], SCRIPT)


def _summary(report: dict[str, Any]) -> str:
    o, config = report["overall"], report["config"]
    attempts = report.get("attempts", {})
    runs = {stage: _world_sizes(attempts.get(stage, [])) for stage in ("edit", "score")}
    rows = [
        ("Edit model", report["edit_model"]), ("Judge", f"{report['judge_model']} ({report['scoring_mode']} mode)"),
        ("Protocol", protocol_line(report)),
        ("Dataset", config["dataset"]["path"]),
        ("Samples", f"{o['count']}: {o['scored']} scored, {o['unparsed']} unparsed, {o['failed']} failed"),
        ("Mean over samples", f"{number(o['mean_over_samples'])} "
                              f"{interval(o.get('mean_over_samples_ci95'))} ({o['scored']} samples)"),
        ("Mean over categories", f"{number(o['mean_over_categories'])} "
                                 f"{interval(o.get('mean_over_categories_ci95'))} "
                                 f"({o['categories_in_mean']} categories)"),
        *((f"Mean {name}", f"{number(d['mean_over_samples'])} {interval(d.get('mean_over_samples_ci95'))}"
                           f" over samples, {number(d['mean_over_categories'])} "
                           f"{interval(d.get('mean_over_categories_ci95'))} over categories "
                           f"({d['scored']} scored)")
          for name, d in o["dimensions"].items() if len(o["dimensions"]) > 1),
        ("Intervals", "95% percentile bootstrap, samples resampled within categories"),
        ("Stage times", ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in report["elapsed_s"].items())),
        ("World sizes", f"edit: {runs['edit']}; score: {runs['score']}"),
    ]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    return f'<header><h1>Edit benchmark report</h1><dl class="summary">{items}</dl></header>'


def _official(report: dict[str, Any]) -> str:
    """The benchmark's own tables (official protocol): each figure with the values it rests on."""
    if "official" not in report:
        return ""
    from score_stage.leaderboards.section import cell_text

    section = report["official"]
    parts = [f"<section><h2>Official protocol: {escape(section['benchmark'])} (judge "
             f"{escape(section['judge'])})</h2>", *(f"<p><strong>Warning:</strong> {escape(w)}</p>"
                                                    for w in section["warnings"])]
    for t in section["tables"]:
        head = "".join(f"<th>{escape(c)}</th>" for c in t["columns"])
        rows = "".join(f"<tr><th>{escape(r['label'])}</th>" + "".join(f"<td>{escape(cell_text(c))}</td>"
                                                                       for c in r["cells"]) + "</tr>"
                       for r in t["rows"])
        parts.append(f"<table><caption>{escape(t['title'])}: value (values behind it); left out, no score: "
                     f"{t['left_out']}</caption><tr><th></th>{head}</tr>{rows}</table>")
    return "".join(parts) + "</section>"


def _world_sizes(attempts: list[dict[str, Any]]) -> str:
    sizes = [str(a["world_size"]) for a in attempts]
    return f"{', '.join(sizes)} ranks" + (f" over {len(sizes)} runs (resumed)" if len(sizes) > 1 else "")


def _chart(report: dict[str, Any]) -> str:
    """Horizontal bars of each category's mean score (0-10), with the counts behind each bar."""
    label_w, bar_w, row_h = 140, 420, 26
    rows = []
    for i, (name, s) in enumerate(report["categories"].items()):
        y, width = i * row_h, 0 if s["mean"] is None else bar_w * s["mean"] / 10
        bounds = s.get("mean_ci95")
        whisker = "" if bounds is None else (
            f'<line class="ci" x1="{label_w + bar_w * bounds[0] / 10:.1f}" '
            f'x2="{label_w + bar_w * bounds[1] / 10:.1f}" y1="{y + row_h / 2}" y2="{y + row_h / 2}" '
            'stroke="#1d1d1f" stroke-width="2"/>')
        label_x = label_w + max(width, 0 if bounds is None else bar_w * bounds[1] / 10) + 6
        rows.append(
            f'<g class="row" data-category="{escape(name)}"><text x="{label_w - 8}" y="{y + 17}" text-anchor="end">'
            f'{escape(name)}</text><rect class="bar" x="{label_w}" y="{y + 4}" width="{width:.1f}" height="{row_h - 8}" '
            f'fill="#4f7cff"><title>{escape(name)}: {number(s["mean"])} {interval(bounds)}</title></rect>'
            f'{whisker}<text x="{label_x:.1f}" y="{y + 17}">{number(s["mean"])} {interval(bounds)} '
            f'(n={s["scored"]} scored of {s["count"]})</text></g>')
    height = row_h * len(rows) + 4
    axis = f'<line x1="{label_w}" x2="{label_w}" y1="0" y2="{height}" stroke="#999"/>'
    return (f'<section id="chart"><h2>Mean score per category (0-10), with 95% bootstrap intervals</h2>'
            f'<svg width="{label_w + bar_w + 300}" height="{height}" role="img">{axis}{"".join(rows)}</svg></section>')


def _agreement(report: dict[str, Any]) -> str:
    """The judge's agreement with the human ratings, when the dataset has them."""
    if "human_agreement" not in report:
        return ""
    found = report["human_agreement"]
    rows = "".join(f"<tr><td>{escape(name)}</td><td>{a['n']}</td><td>{number(a['spearman'])}</td>"
                   f"<td>{number(a['kendall_tau_b'])}</td><td>{number(a['pairwise_accuracy'])}</td></tr>"
                   for name, a in [("all", found["overall"]), *found["categories"].items()])
    return ('<section id="agreement"><h2>Agreement with human ratings</h2><table><tr><th>category</th><th>n</th>'
            '<th>Spearman ρ</th><th>Kendall τ-b</th><th>pairwise accuracy</th></tr>' + rows + "</table></section>")


def _controls(report: dict[str, Any]) -> str:
    categories = "".join(f'<option value="{escape(c)}">{escape(c)}</option>' for c in report["categories"])
    statuses = "".join(f'<option value="{s}">{s}</option>' for s in ("ok", "unparsed", "failed"))
    return ('<section class="controls">'
            f'<label>Category <select id="category"><option value="">all</option>{categories}</select></label>'
            f'<label>Status <select id="status"><option value="">all</option>{statuses}</select></label>'
            '<label>Sort <select id="order"><option value="low">lowest score first</option>'
            '<option value="high">highest score first</option><option value="dataset">dataset order</option>'
            f'</select></label><span id="shown">{len(report["samples"])} samples</span></section>')


def _card(order: int, sample: dict[str, Any], images: dict[str, str | None]) -> str:
    score = "" if sample["score"] is None else f"{sample['score']:.4f}"
    figures = "".join(
        f'<figure>{_img(images.get(kind), kind)}<figcaption>{kind}</figcaption></figure>'
        for kind in ("original", "edited"))
    details = "".join(_dimension(name, answer, len(sample["dimensions"]) > 1)
                      for name, answer in sample["dimensions"].items())
    if sample["status"] == "failed":
        details = f'<div class="dim">failed: {escape(sample.get("reason", ""))}</div>'
    return (f'<article class="card" data-category="{escape(sample["category"])}" data-score="{score}" '
            f'data-status="{escape(sample["status"])}" data-order="{order}"><div class="images">{figures}</div>'
            f'<div class="meta"><span class="score">{number(sample["score"])}</span>'
            f'<span class="tag">{escape(sample["category"])}</span>'
            f'<span class="tag status-{escape(sample["status"])}">{escape(sample["status"])}</span>'
            f'<code>{escape(sample["id"])}</code></div><div class="instruction">{escape(sample["instruction"])}</div>'
            f'{details}</article>')


def _img(uri: str | None, kind: str) -> str:
    if uri is None:
        return f'<div class="missing">no {kind} image</div>'
    return f'<img src="{escape(uri)}" alt="{kind}" loading="lazy" decoding="async">'


def _dimension(name: str, answer: dict[str, Any], named: bool) -> str:
    title = f"<b>{escape(name)}</b> {number(answer['score'])} " if named else ""
    if "distribution" in answer:
        top = max(answer["distribution"]) or 1.0  # bars scaled to the likeliest score; titles give each p
        bars = "".join(
            f'<rect x="{s * 14}" y="{30 - 30 * p / top:.1f}" width="12" height="{30 * p / top:.1f}" fill="#8aa4ff">'
            f"<title>{s}: {p:.3f}</title></rect>" for s, p in enumerate(answer["distribution"]))
        labels = "".join(f'<text x="{s * 14 + 6}" y="43" text-anchor="middle">{s}</text>' for s in range(11))
        return (f'<div class="dim">{title}P(score), valid mass {answer["valid_mass"]:.3f}<br>'
                f'<svg class="distribution" width="156" height="46">{bars}{labels}</svg></div>')
    return f'<div class="dim">{title}<pre>{escape(answer.get("response") or "")}</pre></div>'
