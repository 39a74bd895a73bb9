"""Self-contained HTML pages (report.html, compare.html), each one document that opens offline and runs no
script but its own; and Markdown table cells.

Images are data URIs, styles and the script are inline, and a Content-Security-Policy allows nothing else: no
request leaves the page, and no markup that slipped into a text could run. Every text from a dataset, a config or
a judge goes through `escape`. Standard library only: the launcher's `compare` builds its page without any stage
environment.
"""

from __future__ import annotations

import base64
import hashlib
import html
from typing import Any

BASE_STYLE = """
body{font:14px/1.45 system-ui,"PingFang SC","Hiragino Sans GB","Microsoft YaHei","Noto Sans CJK SC",
"WenQuanYi Micro Hei",sans-serif;margin:0;color:#1d1d1f;background:#f5f5f7}
header,section,main{max-width:1200px;margin:0 auto;padding:12px 20px}
h1{font-size:22px;margin:16px 0 4px}h2{font-size:16px;margin:8px 0}
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:right}td:first-child,th:first-child{text-align:left}
.controls{display:flex;gap:16px;align-items:center;flex-wrap:wrap}
svg text{font-size:12px}
"""


def escape(value: Any) -> str:
    """Any value as HTML text, quotes included (safe inside attributes too)."""
    return html.escape(str(value), quote=True)


def markdown_cell(text: Any) -> str:
    """`text` as one Markdown table cell: a `|` would start a new column and a newline a new row."""
    return " ".join(str(text).split("\n")).replace("|", "\\|")


def document(title: str, style: str, body: list[str], script: str) -> str:
    """The whole page: `body` parts in order, then `script`, the only script the policy lets run (by hash)."""
    script_hash = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{escape(title)}</title>", f"<style>{BASE_STYLE}{style}</style></head><body>",
        *body, f"<script>{script}</script></body></html>",
    ])
