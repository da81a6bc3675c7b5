"""Rich renderings for the CLI: live rollout view, history, records.

Every piece of recorded text (reasons, versions, names, actors) goes into a ``Text``, never a
markup string, so it prints as written on any console (see ``output.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from shipwarden.ports.store import Deployment
from shipwarden.ports.store import DeploymentStore as Store

_STYLE = {"ok": "green", "failed": "red", "running": "yellow"}
_PHASE_STYLE = {"succeeded": "bold green", "rolled_back": "bold yellow", "failed": "bold red"}


def _p(value: object) -> Text:
    """Recorded text, printed literally (a reason may well contain ``[...]``)."""
    return Text(str(value))


def _t(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%H:%M:%S.%f")[:-3] if ts else ""


def rollout_view(store: Store, dep: Deployment, extra: str = "") -> Group:
    head = Text.assemble(
        (f"{dep.id} ", "bold"),
        f"{dep.service} {dep.from_version or '∅'} → {dep.to_version} ",
        (f"[{dep.strategy}] ", "dim"),
        (dep.phase.value, _PHASE_STYLE.get(dep.phase.value, "yellow")),
        ("  paused" if dep.paused else "", "magenta"),
    )
    table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
    for col in ("#", "phase", "started", "took", "result", "reason"):
        table.add_column(col)
    now = time.time()
    for s in store.steps(dep.id):
        took = (s.finished_at or now) - s.started_at
        table.add_row(
            str(s.seq),
            _p(s.phase),
            _t(s.started_at),
            f"{took:5.1f}s",
            Text(s.outcome, _STYLE.get(s.outcome, "")),
            _p(s.reason),
        )
    return Group(head, table, Text(extra, "dim"))


def live(
    console: Console, store: Store, run: Callable[[Callable[[Any], None]], Deployment], dep_id: str
) -> Deployment:
    """Drive ``run`` while showing the steps live; falls back to plain lines when not a terminal."""
    last_phase: list[str] = []

    if not console.is_terminal:

        def on_tick(tick: Any) -> None:
            d = tick.deployment
            key = f"{d.phase}:{d.wave}:{d.step_index}"
            if not last_phase or last_phase[-1] != key:
                last_phase.append(key)
                console.print(_p(f"  {_t(time.time())} {d.phase.value:<16} {d.reason}"), highlight=False)

        return run(on_tick)

    with Live(rollout_view(store, store.get(dep_id)), console=console, refresh_per_second=8) as view:

        def on_tick(tick: Any) -> None:
            o = tick.observation
            extra = (
                f"new {o.new_healthy}/{o.new_running} healthy, old {o.old_running} running, "
                f"weights {dict(o.production_weights)}"
            )
            view.update(rollout_view(store, store.get(dep_id), extra))

        final = run(on_tick)
        view.update(rollout_view(store, final))
    return final


def print_outcome(console: Console, dep: Deployment) -> None:
    style = _PHASE_STYLE.get(dep.phase.value, "yellow")
    console.print(Text.assemble((f"{dep.id} {dep.phase.value}", style), f": {dep.reason}"))


def follow_controller(
    console: Console,
    store: Store,
    driving: Callable[[], list[str]],
    stop: Callable[[], bool],
    poll_s: float = 0.5,
) -> None:
    """One line when a controller starts driving a deployment, one with its outcome when it ends
    (``reconcile --watch``: several deployments at once, so no live table)."""
    seen: set[str] = set()
    while True:
        now = set(driving())
        for dep_id in sorted(now - seen):
            d = store.get(dep_id)
            console.print(
                _p(f"driving {d.id}: {d.service} {d.from_version or '(none)'} → {d.to_version} ({d.phase})"),
                highlight=False,
            )
        for dep_id in sorted(seen - now):
            print_outcome(console, store.get(dep_id))
        seen = now
        if stop():
            return
        time.sleep(poll_s)


def status(console: Console, store: Store, service: str, follow: bool = True) -> None:
    dep = store.active(service) or next(iter(store.history(service, 1)), None)
    if dep is None:
        console.print(_p(f"{service}: no deployments yet"))
        return
    if not follow or dep.phase.terminal or not console.is_terminal:
        console.print(rollout_view(store, dep))
        return
    with Live(rollout_view(store, dep), console=console, refresh_per_second=4) as view:
        while not dep.phase.terminal:
            time.sleep(0.25)
            dep = store.get(dep.id)
            view.update(rollout_view(store, dep))


def history(console: Console, deps: list[Deployment]) -> None:
    table = Table(title="deployments", box=None, header_style="dim")
    for col in ("id", "service", "kind", "from", "to", "strategy", "started", "took", "outcome", "by"):
        table.add_column(col)
    for d in deps:
        took = f"{d.finished_at - d.created_at:.1f}s" if d.finished_at else "…"
        table.add_row(
            *map(_p, (d.id, d.service, d.kind, d.from_version or "∅", d.to_version, d.strategy)),
            datetime.fromtimestamp(d.created_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S"),
            took,
            Text(d.outcome, _PHASE_STYLE.get(d.phase.value, "yellow")),
            _p(d.actor),
        )
    console.print(table)


def _summary(detail: dict[str, Any]) -> str:
    """One line per step: what was checked and what was started or stopped."""
    parts = []
    for key in ("preview_check", "production_check", "analysis_verdict"):
        if key in detail:
            c = detail[key]
            parts.append(("✓ " if c.get("ok") else "✗ ") + str(c.get("detail", "")))
    if detail.get("holding"):
        parts.append(str(detail["holding"]))
    for key in ("started", "stopped", "replaced_stable"):
        if detail.get(key):
            parts.append(f"{key.replace('_', ' ')} {len(detail[key])} instance(s)")
    return "; ".join(parts)


def record(console: Console, r: dict[str, Any]) -> None:
    console.print(
        Text.assemble(
            ("deployment ", "dim"),
            (r["id"], "bold"),
            f"  {r['service']} ",
            f"{r['from_version'] or '∅'} → {r['to_version']}  ",
            (r["outcome"], _PHASE_STYLE.get(r["phase"], "yellow")),
        )
    )
    for k in (
        "kind",
        "strategy",
        "commit",
        "started_by",
        "created_at",
        "finished_at",
        "duration_s",
        "reason",
        "detected_at",
        "rolled_back_at",
    ):
        if r.get(k) is not None:
            console.print(_p(f"  {k:<14} {r[k]}"), highlight=False)
    policy = r["policy"]
    console.print(_p(f"  {'policy':<14} {policy['source']} (sha256 {policy['digest'][:16]}…)"))
    table = Table(box=None, header_style="dim", title="steps")
    for col in ("#", "phase", "started", "took", "result", "reason", "checks"):
        table.add_column(col, overflow="fold", no_wrap=col in ("phase", "started", "took"))
    for s in r["steps"]:
        detail = _summary(s["detail"])
        table.add_row(
            str(s["seq"]),
            _p(s["phase"]),
            (s["started_at"] or "")[11:23],  # HH:MM:SS.mmm
            f"{s['duration_s']:.2f}s" if s["duration_s"] is not None else "…",
            Text(s["outcome"], _STYLE.get(s["outcome"], "")),
            _p(s["reason"]),
            _p(detail),
        )
    console.print(table)
    console.print(
        f"  audit entries: {len(r['audit'])} (chain head {r['audit'][-1]['hash'][:16]}…)"
        if r["audit"]
        else "  audit entries: 0",
        highlight=False,
    )
