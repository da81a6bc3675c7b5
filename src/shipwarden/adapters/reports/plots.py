"""Metric plots for the incident report (matplotlib, Agg backend: no display, PNG bytes).

One figure, three panels sharing the time axis — requests/s, error ratio, p95 latency — with a
vertical line for each marker (deployment steps, alerts, the incident's own actions, database
and configuration changes; each one an audit entry, labelled with its seq), and the onset and
restore times shaded.  Nothing here reads the network or the store: the series come in the
report document.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: never a display

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["metric_figure"]

_COLOURS = {
    "deployment": "#1f77b4",
    "alert": "#d62728",
    "incident": "#222222",
    "database": "#9467bd",
    "config": "#ff7f0e",
}


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def _series(points: Sequence[Sequence[float]]) -> tuple[list[datetime], list[float]]:
    return [_dt(p[0]) for p in points], [float(p[1]) for p in points]


def _iso(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def metric_figure(doc: Mapping[str, Any]) -> bytes | None:
    """The report's metric plot as PNG bytes; ``None`` when there is nothing to plot."""
    m = doc.get("metrics") or {}
    req, err, lat = m.get("requests") or [], m.get("errors") or [], m.get("latency_ms") or []
    if not (req or err or lat):
        return None
    inc = doc.get("incident") or {}
    onset, restored = _iso(inc.get("onset_at")), _iso(inc.get("restored_at"))
    fig, axes = plt.subplots(3, 1, figsize=(10, 7.2), sharex=True, dpi=110)
    try:
        ax_req, ax_err, ax_lat = axes
        if req:
            ax_req.plot(*_series(req), color="#2ca02c", lw=1.4)
        ax_req.set_ylabel("requests/s")
        by_t = {round(p[0], 3): p[1] for p in req}
        ratio = [(p[0], 100.0 * p[1] / by_t[round(p[0], 3)]) for p in err if by_t.get(round(p[0], 3))]
        if ratio:
            ax_err.plot(*_series(ratio), color="#d62728", lw=1.4, label="all versions")
        for version, pts in sorted((m.get("by_version") or {}).items()):
            if pts:
                ax_err.plot(*_series([(p[0], 100.0 * p[1]) for p in pts]), lw=1, ls="--", label=version)
        if ratio or m.get("by_version"):
            ax_err.legend(loc="upper left", fontsize=7)
        ax_err.set_ylabel("errors (5xx) %")
        if lat:
            ax_lat.plot(*_series(lat), color="#8c564b", lw=1.4)
        ax_lat.set_ylabel("p95 latency ms")
        lo, hi = ax_req.get_xlim()
        for mk in doc.get("markers") or []:
            at = _dt(float(mk["at"]))
            colour = _COLOURS.get(str(mk.get("kind")), "#7f7f7f")
            for ax in axes:
                ax.axvline(at, color=colour, lw=0.9, ls=":" if mk.get("kind") == "alert" else "--", alpha=0.9)
            x = mdates.date2num(at)  # type: ignore[no-untyped-call]
            ax_req.annotate(f"#{mk['seq']}", (x, 1.0), xycoords=("data", "axes fraction"),
                            fontsize=6, rotation=90, va="top", ha="right", color=colour)  # fmt: skip
        if onset is not None:
            end = restored or _dt(float((req or err or lat)[-1][0]))
            for ax in axes:
                ax.axvspan(onset, end, color="#d62728", alpha=0.08)
        ax_req.set_xlim(lo, hi)
        fmt = mdates.DateFormatter("%H:%M", tz=UTC)  # type: ignore[no-untyped-call]
        ax_lat.xaxis.set_major_formatter(fmt)
        ax_lat.set_xlabel("time (UTC); shaded: onset → restored; dashed: deployments; dotted: alerts")
        for ax in axes:
            ax.grid(alpha=0.3)
        fig.suptitle(f"{inc.get('service') or ''} — source: {m.get('source')}", fontsize=10)
        fig.subplots_adjust(left=0.08, right=0.98, top=0.93, bottom=0.08, hspace=0.12)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
