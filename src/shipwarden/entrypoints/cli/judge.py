"""``shipwarden judge``: run a canary judge over recorded baseline/canary samples.

Register with ``app.command("judge")(judge_command)``.  The files are JSON
lines, one analysis interval per line (format: docs/judge.md); line *i* of
the baseline file is compared with line *i* of the canary file.  The judge
is fed pair by pair exactly as the controller would feed it live, and stops
at the first decision, so ``decidedAt`` says how many intervals the live
analysis would have needed.

Exit codes: 0 pass, 1 fail, 2 bad input (with file:line), 3 inconclusive.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shipwarden.domain.analysis import JudgeSpec, load_judge_spec_text
from shipwarden.domain.policy import PolicyError

if TYPE_CHECKING:  # the judges import SciPy: only this command pays for it, not every CLI call
    from shipwarden.domain.judge import Sample, Verdict

EXIT = {"pass": 0, "fail": 1, "inconclusive": 3, "running": 3}


class _BadInput(Exception):
    pass


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _BadInput(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _BadInput(f"{path}: cannot read the {what} file: {exc}") from None


def warmup_pairs(canary: list[Sample], spec: JudgeSpec) -> int:
    """How many leading pairs fall in the warm-up (from the first sample's time, as live)."""
    if not canary or spec.warmup_seconds <= 0:
        return 0
    first = canary[0].t
    return sum(1 for s in canary if s.t - first < spec.warmup_seconds)


def run_judge(baseline: list[Sample], canary: list[Sample], spec: JudgeSpec, algorithm: str) -> Verdict:
    """Feed the pairs in order; stop at the first decision; the end of the input is the horizon.

    Pairs inside ``spec.warmup`` are skipped first (``decidedAt`` counts judged pairs).
    When the files are shorter than ``spec.samples`` the window is the files:
    the judge is told so (``samples`` = number of pairs) before it starts.
    """
    from shipwarden.domain.judge import make_judge

    skip = warmup_pairs(canary, spec)
    baseline, canary = baseline[skip:], canary[skip:]
    n = len(baseline)
    if n < spec.samples:
        spec = spec.model_copy(update={"samples": max(n, 2)})
    judge = make_judge(spec, algorithm)
    verdict = judge.verdict
    for b, c in zip(baseline, canary, strict=True):
        verdict = judge.update(b, c)
        if verdict.decision.done:
            return verdict
    return judge.finish()


def judge_command(
    baseline: Annotated[
        Path, typer.Option("--baseline", "-b", help="Baseline samples, JSON lines (one interval per line).")
    ],
    canary: Annotated[
        Path, typer.Option("--canary", "-c", help="Canary samples, JSON lines, same intervals.")
    ],
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", "-p", help="Judge settings (YAML/JSON): a judge mapping or an analysis with 'judge:'."
        ),
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge", "-j", help="sequential | mann-whitney (default: the policy's, else sequential)."
        ),
    ] = None,
) -> None:
    """Compare canary with baseline samples; print the verdict as JSON (0 pass, 1 fail, 3 inconclusive)."""
    from shipwarden.domain.judge import SampleParseError, parse_samples

    try:
        if judge is not None and judge not in ("sequential", "mann-whitney"):
            raise _BadInput(f"--judge: unknown judge {judge!r}; use 'sequential' or 'mann-whitney'")
        spec = JudgeSpec()
        if policy is not None:
            spec = load_judge_spec_text(_read(policy, "policy"), str(policy))
        algorithm = judge or spec.algorithm
        b = parse_samples(_read(baseline, "baseline"), str(baseline))
        c = parse_samples(_read(canary, "canary"), str(canary))
        if len(b) != len(c):
            raise _BadInput(
                f"{baseline} has {len(b)} samples but {canary} has {len(c)}: line i of each file must be "
                "the same interval, so both need the same number of lines"
            )
    except (_BadInput, SampleParseError, PolicyError) as exc:
        typer.echo(f"error: {exc}".replace("\n", "\nerror: "), err=True)
        raise typer.Exit(2) from None
    verdict = run_judge(b, c, spec, algorithm)
    out = verdict.to_dict()
    out["input"] = {
        "baseline": str(baseline),
        "canary": str(canary),
        "pairs": len(b),
        "warmupSkipped": warmup_pairs(c, spec),
    }
    sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    raise typer.Exit(EXIT[verdict.decision.value])


def plan_command(
    rps: Annotated[float, typer.Option("--rps", help="Requests per second the service serves in all.")],
    error_rate: Annotated[
        float, typer.Option("--error-rate", help="The stable version's usual error rate, e.g. 0.002.")
    ],
    weight: Annotated[
        float, typer.Option("--weight", help="Percent of traffic the canary gets while it is judged.")
    ] = 20.0,
    interval: Annotated[
        str, typer.Option("--interval", help="Analysis interval: one judge sample per interval (e.g. 10s).")
    ] = "60s",
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", "-p", help="Judge settings (YAML/JSON): a judge mapping or an analysis with 'judge:'."
        ),
    ] = None,
) -> None:
    """Is the judge's window big enough at this traffic? JSON per metric (0 enough, 3 not enough).

    The canary gets ``weight`` % of ``rps``, the baseline (stable) the rest.
    For each metric: the ratio the sequential judge catches within ``samples``
    intervals (``detectableRatio``) and the intervals it needs to catch its
    ``regression`` (``samplesNeeded``) — see "Is the window big enough?" in
    docs/judge.md.
    """
    from shipwarden.domain._base import parse_duration
    from shipwarden.domain.judge import SequentialJudge

    try:
        if not rps > 0:
            raise _BadInput(f"--rps must be > 0, got {rps:g}")
        if not 0.0 < error_rate < 1.0:
            raise _BadInput(f"--error-rate must be between 0 and 1 (exclusive), got {error_rate:g}")
        if not 0.0 < weight < 100.0:
            raise _BadInput(f"--weight must be between 0 and 100 (exclusive), got {weight:g}")
        try:
            seconds = parse_duration(interval)
        except ValueError as exc:
            raise _BadInput(f"--interval: {exc}") from None
        if seconds <= 0:
            raise _BadInput(f"--interval must be positive, got {interval!r}")
        spec = JudgeSpec()
        if policy is not None:
            spec = load_judge_spec_text(_read(policy, "policy"), str(policy))
    except (_BadInput, PolicyError) as exc:
        typer.echo(f"error: {exc}".replace("\n", "\nerror: "), err=True)
        raise typer.Exit(2) from None
    per_sample = rps * seconds
    canary = per_sample * weight / 100.0
    metrics = SequentialJudge(spec).plan(per_sample - canary, canary, error_rate, seconds)
    out = {
        "traffic": {
            "rps": rps,
            "weight": weight,
            "intervalSeconds": seconds,
            "baselineRequestsPerSample": per_sample - canary,
            "canaryRequestsPerSample": canary,
            "errorRate": error_rate,
        },
        "samples": spec.samples,
        "windowSeconds": spec.samples * seconds,
        "metrics": metrics,
    }
    from shipwarden.domain.judge.verdict import clean_json

    sys.stdout.write(json.dumps(clean_json(out), indent=2) + "\n")
    raise typer.Exit(0 if all(m["windowIsEnough"] for m in metrics) else 3)
