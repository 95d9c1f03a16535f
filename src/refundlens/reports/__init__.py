"""Evidence reports: a self-contained HTML page for scans (``html``) and the per-claim PDF
(``pdf.render_claim_pdf``, imported on use: WeasyPrint is slow to import)."""

from .html import render_html_report, write_html_report

__all__ = ["render_html_report", "write_html_report"]
