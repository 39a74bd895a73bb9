"""report.html: the builder's content and escaping, and the page as headless Chromium renders it (the demo's report,
and a 1,000-sample synthetic one for size and load time)."""

import html
import io
import os
import re
import time
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from conftest import chromium, console_messages, needs_chromium
from score_stage.report import build_report
from score_stage.report_page import build_html, thumbnail

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'


def _sample(sample_id, category, score, status="ok", response="Score: 7\nFine.", dims=None):
    return {"id": sample_id, "category": category, "instruction": f"把{sample_id}变成夜晚 <b>now</b>",
            "score": score, "status": status, "response": response,
            "dimensions": dims if dims is not None else {"score": {"score": score, "response": response}}}


def _report(samples, categories=("物理", "环境", "指代")):
    return build_report(samples, list(categories), edit_model="tiny/edit", judge_model="tiny/judge",
                        scoring_mode="generate", config={"dataset": {"path": "/data/benchmark.jsonl"}},
                        elapsed_s={"edit": 12.5, "score": 3.25}, attempts={"edit": [{"world_size": 2}],
                                                                           "score": [{"world_size": 1}]})


SAMPLES = [_sample("p1", "物理", 8.0),
           _sample("p2", "物理", None, "unparsed", HOSTILE, {"score": {"score": None, "response": HOSTILE}}),
           _sample("e1", "环境", 3.5), _sample("e2", "环境", 6.0),
           {**_sample("r1", "指代", None, "failed", None, {}), "reason": "cannot decode image <x>.png"}]
THUMBS = {"p1": {"original": thumbnail(Image.new("RGB", (640, 480), (200, 30, 30))), "edited": None}}


class _Cards(HTMLParser):
    """Collects each card's data attributes, and every script element's text."""

    def __init__(self):
        super().__init__()
        self.cards, self.scripts, self._in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "article":
            self.cards.append(attrs)
        self._in_script = tag == "script"

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)

    def handle_endtag(self, tag):
        self._in_script = False


def _parse(page):
    parser = _Cards()
    parser.feed(page)
    return parser


def test_every_sample_appears_once_lowest_score_first_unscored_first_of_all():
    cards = _parse(build_html(_report(SAMPLES), THUMBS)).cards
    assert [c["data-order"] for c in cards] == ["1", "4", "2", "3", "0"]       # p2, r1 (no score), 3.5, 6, 8
    assert sorted(c["data-category"] for c in cards) == sorted(s["category"] for s in SAMPLES)
    assert [c["data-score"] for c in cards] == ["", "", "3.5000", "6.0000", "8.0000"]


def test_hostile_and_chinese_text_is_shown_as_text_never_as_markup():
    page = build_html(_report(SAMPLES), THUMBS)
    assert html.escape(HOSTILE) in page and HOSTILE not in page
    assert "onerror=alert" not in page.replace(html.escape("onerror=alert"), "")
    assert len(_parse(page).scripts) == 1                                      # only the page's own script
    assert "把p1变成夜晚 &lt;b&gt;now&lt;/b&gt;" in page
    assert "failed: cannot decode image &lt;x&gt;.png" in page


def test_category_counts_and_bars_match_the_report():
    report = _report(SAMPLES)
    page = build_html(report, THUMBS)
    bars = re.findall(r'<g class="row" data-category="([^"]+)">.*?</g>', page)
    assert bars == list(report["categories"]) == ["物理", "环境", "指代"]
    for name, stats in report["categories"].items():
        assert f"(n={stats['scored']} scored of {stats['count']})" in page
    assert 'width="199.5"' in page                       # 环境: mean 4.75 of 10 on a 420 px axis
    assert "5: 3 scored, 1 unparsed, 1 failed" in page


def test_only_the_pages_own_script_may_run_and_nothing_is_loaded_from_outside():
    page = build_html(_report(SAMPLES), THUMBS)
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in policy and "img-src data:" in policy and "script-src 'sha256-" in policy
    assert not re.search(r'(src|href)="(?!data:)', page)                 # no external script, font or image


def test_thumbnails_are_bounded_jpegs():
    uri = thumbnail(Image.new("RGB", (4000, 1000), (10, 20, 30)))
    assert uri.startswith("data:image/jpeg;base64,")
    import base64
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert image.size == (256, 64)


def test_a_distribution_is_drawn_for_expected_mode():
    distribution = [0.0] * 11
    distribution[7], distribution[8] = 0.75, 0.25
    dims = {"reasoning": {"score": 7.25, "distribution": distribution, "valid_mass": 0.9},
            "quality": {"score": 5.0, "distribution": [1 / 11] * 11, "valid_mass": 0.8}}
    page = build_html(_report([_sample("p1", "物理", 6.0, dims=dims)]), {})
    assert page.count('class="distribution"') == 2 and "<title>7: 0.750</title>" in page
    assert "<b>reasoning</b> 7.250" in page and "valid mass 0.900" in page


# --- in a real browser -------------------------------------------------------------------------------------------

@pytest.mark.slow
@needs_chromium
def test_the_demo_report_renders_offline_in_chromium(demo_run, tmp_path):
    _, out = demo_run
    page = os.path.join(out, "report.html")
    dom, stderr = chromium(page, tmp_path, "--dump-dom")
    assert console_messages(stderr) == []
    assert 'data-ready="true"' in dom                                    # the script ran to its end
    assert len(re.findall(r'<article class="card"', dom)) == 10
    assert len(re.findall(r'<rect class="bar"', dom)) == 5
    assert "10 of 10 samples" in dom and "物理" in dom
    shot = tmp_path / "report.png"
    _, stderr = chromium(page, tmp_path, "--window-size=1280,1600", f"--screenshot={shot}")
    assert console_messages(stderr) == [] and shot.stat().st_size > 20_000
    with Image.open(shot) as image:
        assert image.size == (1280, 1600) and len(image.getcolors(1 << 16) or range(1 << 16)) > 50


def _photo_like(seed: int, size: int = 1024) -> Image.Image:
    """A synthetic image with a photograph's kind of detail: smooth colour regions plus fine grain."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    grain = rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(coarse, dtype=np.float64) + grain, 0, 255).astype(np.uint8))


@pytest.mark.slow
@needs_chromium
def test_a_1000_sample_report_stays_small_and_loads_without_freezing(tmp_path):
    uris = [thumbnail(_photo_like(seed)) for seed in range(40)]
    categories = ["物理", "环境", "社会", "因果", "指代"]
    samples = [_sample(f"s{i:04d}", categories[i % 5], round((i * 37 % 101) / 10, 2),
                       response="Score: 6\nThe edit follows the instruction, but the shadow is wrong.")
               for i in range(1000)]
    # One sample carries markup that would mark the page if it ever ran, in every text the page shows.
    payload = '<img src=x onerror="document.body.dataset.pwned=1"><script>document.body.dataset.pwned=2</script>'
    samples[0] = {**samples[0], "response": payload, "instruction": payload,
                  "dimensions": {"score": {"score": samples[0]["score"], "response": payload}}}
    thumbs = {s["id"]: {"original": uris[i % 40], "edited": uris[(i + 7) % 40]} for i, s in enumerate(samples)}
    page = tmp_path / "report.html"
    page.write_text(build_html(_report(samples, categories), thumbs), encoding="utf-8")
    size_mb = page.stat().st_size / 1e6
    start = time.monotonic()
    dom, stderr = chromium(str(page), tmp_path, "--dump-dom")
    load_s = time.monotonic() - start
    assert console_messages(stderr) == [] and 'data-ready="true"' in dom
    assert len(re.findall(r'<article class="card"', dom)) == 1000
    assert "data-pwned" not in dom and dom.count("&lt;script&gt;document.body.dataset.pwned=2") == 2
    assert size_mb < 40 and load_s < 60
    print(f"\n1,000-sample report.html: {size_mb:.1f} MB; headless Chromium loaded it and ran its script in "
          f"{load_s:.1f} s (including browser start)")
