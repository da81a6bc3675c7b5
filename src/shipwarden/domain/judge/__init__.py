"""Statistical canary judges: baseline vs canary, interval by interval.

``SequentialJudge`` (the default) decides as soon as the evidence suffices
with an always-valid false-rollback bound; ``MannWhitneyJudge`` is the
Kayenta-style fixed-window judge.  Both take ``Sample`` pairs through
``update`` and return a ``Verdict``.  ``make_judge`` picks one from a spec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipwarden.domain.analysis import JudgeSpec
from shipwarden.domain.judge.samples import Sample, SampleIssue, SampleParseError, parse_sample, parse_samples
from shipwarden.domain.judge.sequential import RateBelowEProcess, RatioEProcess, SequentialJudge
from shipwarden.domain.judge.verdict import Classification, Decision, Judge, MetricVerdict, Verdict

if TYPE_CHECKING:
    from shipwarden.domain.judge.mann_whitney import MannWhitneyJudge


def __getattr__(name: str) -> Any:
    # The Mann-Whitney judge needs SciPy (≈1 s to import): loaded when first used, so the CLI
    # and the controller start fast when the policy uses the sequential judge.
    if name == "MannWhitneyJudge":
        from shipwarden.domain.judge.mann_whitney import MannWhitneyJudge

        return MannWhitneyJudge
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_judge(spec: JudgeSpec | None = None, algorithm: str | None = None) -> Judge:
    """A fresh judge for ``spec``; ``algorithm`` overrides ``spec.algorithm``."""
    spec = spec or JudgeSpec()
    which = algorithm or spec.algorithm
    if which == "sequential":
        return SequentialJudge(spec)
    if which == "mann-whitney":
        from shipwarden.domain.judge.mann_whitney import MannWhitneyJudge

        return MannWhitneyJudge(spec)
    raise ValueError(f"unknown judge {which!r}; use 'sequential' or 'mann-whitney'")


__all__ = [
    "Classification",
    "Decision",
    "Judge",
    "JudgeSpec",
    "MannWhitneyJudge",
    "MetricVerdict",
    "RateBelowEProcess",
    "RatioEProcess",
    "Sample",
    "SampleIssue",
    "SampleParseError",
    "SequentialJudge",
    "Verdict",
    "make_judge",
    "parse_sample",
    "parse_samples",
]
