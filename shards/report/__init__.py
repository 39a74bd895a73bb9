"""What reports and comparisons share: report.json's typed definition (`schema`, with its run record in `record`),
statistics (`stats`), how numbers and intervals are written (`numbers`), and self-contained HTML pages (`page`).

Standard library only: `launch compare` builds its page without any stage environment.
"""
