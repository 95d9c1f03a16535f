"""Evidence reports: a self-contained HTML page (``html``); the PDF report comes with the
claims service."""

from .html import render_html_report, write_html_report

__all__ = ["render_html_report", "write_html_report"]
