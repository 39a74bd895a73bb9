"""What the score stage writes into the output folder for people and for `launch compare`.

Standard library only.
"""

from __future__ import annotations

# The score stage's files in the output folder (listed here so that restarting the edit stage removes them too).
# thumbnails.json holds the page's images, so that `launch compare` can show them with the standard library alone.
REPORT_NAMES = ("report.json", "results.csv", "report.md", "report.html", "thumbnails.json")
