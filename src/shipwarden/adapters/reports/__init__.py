"""Report rendering: the incident report as HTML (Jinja2), its plots (matplotlib) and PDF (Chromium)."""
