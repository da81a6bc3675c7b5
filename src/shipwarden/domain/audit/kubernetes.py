"""Kubernetes audit events (``audit.k8s.io/v1`` ``EventList``, as the webhook backend POSTs them).

:func:`k8s_batch` checks a whole batch, listing every problem with its JSON path
(:class:`K8sAuditError`), and converts each event to the fields of its entry; request and
response bodies are dropped.  The converted :class:`K8sBatch` is linked by
:meth:`.chain.AuditChain.rows` without building drafts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shipwarden.domain.audit.canonical import _encode_sorted_object
from shipwarden.domain.audit.entries import _TS_FORM, ACTION_MAX, ACTOR_MAX, AuditError, EntryDraft, _parse_ts
from shipwarden.domain.jsonlimits import JsonLimitError, loads_bounded

_K8S_STAGES = frozenset({"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"})
_K8S_LEVELS = frozenset({"None", "Metadata", "Request", "RequestResponse"})
_OBJECT_REF_KEYS = ("apiGroup", "apiVersion", "name", "namespace", "subresource")  # sorted
_ONLY_STR = frozenset({str})
_K8S_OUTCOMES = frozenset({"ok", "denied", "failed", "pending"})  # chain.py writes them unescaped
_SEALED = object()


@dataclass(frozen=True, slots=True)
class K8sProblem:
    """One thing wrong with an ``EventList``: a JSON path (``items[3].user.username``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class K8sAuditError(ValueError):
    """The batch is malformed; nothing from it may be stored.  ``problems`` lists every issue."""

    def __init__(self, problems: Sequence[K8sProblem]) -> None:
        self.problems = list(problems)
        shown = "; ".join(map(str, self.problems[:10]))
        more = f" (and {len(self.problems) - 10} more)" if len(self.problems) > 10 else ""
        super().__init__(f"invalid Kubernetes audit EventList: {shown}{more}")


#: the actor of an event whose request failed authentication (401, ``"user": {}``)
UNAUTHENTICATED = "(unauthenticated)"
#: the action of the entry that records an event shipwarden could not accept
REJECTED_ACTION = "k8s.audit.rejected"
#: apiVersions of log-backend lines (one Event per line); v1beta1 (clusters before 1.24) has the
#: same fields for everything shipwarden keeps
_LOG_VERSIONS = frozenset({"audit.k8s.io/v1", "audit.k8s.io/v1beta1"})


def _code_of(status: Any) -> Any:
    return status.get("code") if type(status) is dict else None


def _k8s_outcome(stage: str, code: int | None) -> str:
    if stage == "Panic":
        return "failed"
    if code is None:
        return "pending"  # RequestReceived / ResponseStarted: the answer is not known yet
    if code in (401, 403):
        return "denied"
    return "ok" if code < 400 else "failed"


def _need_str(
    ev: dict[str, Any], key: str, at: str, problems: list[K8sProblem], allowed: frozenset[str] | None = None
) -> str:
    v = ev.get(key)
    if type(v) is not str or not v:
        got = " (missing)" if v is None else f", got {v!r}"
        problems.append(K8sProblem(f"{at}.{key}", f"required non-empty string{got}"))
        return ""
    if allowed is not None and v not in allowed:
        problems.append(K8sProblem(f"{at}.{key}", f"must be one of {sorted(allowed)}, got {v!r}"))
    return v


def _bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the last one ``…``, if it is longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sorted_keys(d: dict[str, Any]) -> bool:
    keys = list(d)
    return all(a < b for a, b in zip(keys, keys[1:], strict=False))


_K8sEvent = tuple[str, str, str, dict[str, Any], datetime | str]
"""A converted event: ``(actor, action, outcome, detail, when)`` — source is ``kubernetes``, and
there is no service or deployment; ``when`` is a str only if it is in the stored form."""


def _k8s_event(ev: Any, i: int, received_at: datetime, problems: list[K8sProblem]) -> _K8sEvent | None:
    """One Event → one converted event, or ``None`` with its problems appended.  This is the ingest hot
    path (a webhook batch is 400 events), hence exact ``type(...) is`` checks on parsed JSON,
    each field tested inline and :func:`_need_str` called only to describe a failure (``i`` is the
    event's index in ``items``: its path is spelled out only for a problem)."""
    if type(ev) is not dict:
        problems.append(K8sProblem(f"items[{i}]", "each item must be an audit Event object"))
        return None
    before = len(problems)
    get: Callable[[str], Any] = ev.get
    kind = get("kind")
    if kind is not None and kind != "Event":
        problems.append(K8sProblem(f"items[{i}].kind", f"must be 'Event', got {kind!r}"))
    level = get("level")
    if type(level) is not str or level not in _K8S_LEVELS:
        _need_str(ev, "level", f"items[{i}]", problems, _K8S_LEVELS)
    audit_id = get("auditID")
    if type(audit_id) is not str or not audit_id:
        _need_str(ev, "auditID", f"items[{i}]", problems)
    stage = get("stage")
    if type(stage) is not str or stage not in _K8S_STAGES:
        _need_str(ev, "stage", f"items[{i}]", problems, _K8S_STAGES)
    uri = get("requestURI")
    if type(uri) is not str or not uri:
        _need_str(ev, "requestURI", f"items[{i}]", problems)
    verb = get("verb")
    if type(verb) is not str or not verb:
        _need_str(ev, "verb", f"items[{i}]", problems)
    user = get("user")
    username = ""
    if type(user) is not dict:
        problems.append(K8sProblem(f"items[{i}].user", "required UserInfo object"))
    else:
        username = user.get("username")  # type: ignore[assignment]
        if username is None and not user and _code_of(get("responseStatus")) == 401:
            # A request whose credentials were refused has no user: the apiserver writes
            # "user": {} with code 401.  That is an event worth keeping (who knocked, from where).
            username = UNAUTHENTICATED
        elif type(username) is not str or not username:
            problems.append(K8sProblem(f"items[{i}].user.username", "required non-empty string"))
    ips = get("sourceIPs")
    if ips is None:
        ips = []
    elif type(ips) is not list or not _ONLY_STR.issuperset(map(type, ips)):
        problems.append(K8sProblem(f"items[{i}].sourceIPs", "must be a list of strings"))
    code: int | None = None
    status = get("responseStatus")
    if status is not None:
        c = status.get("code") if type(status) is dict else None
        if type(status) is not dict or (c is not None and (type(c) is not int or not 0 < c < 1000)):
            problems.append(
                K8sProblem(f"items[{i}].responseStatus.code", f"must be an HTTP status, got {c!r}")
            )
        else:
            code = c
    ref = get("objectRef")
    if ref is not None and (type(ref) is not dict or type(ref.get("resource", "")) is not str):
        problems.append(K8sProblem(f"items[{i}].objectRef", "must be an ObjectReference object"))
    when: datetime | str = received_at
    ts_key = "stageTimestamp" if get("stageTimestamp") else "requestReceivedTimestamp"
    ts_raw = get(ts_key)
    if ts_raw is not None:
        try:
            if type(ts_raw) is not str:
                raise AuditError(f"must be an RFC 3339 string, got {ts_raw!r}")
            parsed = _parse_ts(ts_raw)  # validates even when the text is kept as is
            when = ts_raw if _TS_FORM.match(ts_raw) else parsed
        except AuditError as exc:
            problems.append(K8sProblem(f"items[{i}].{ts_key}", str(exc)))
    if len(problems) > before:
        return None

    # Request/response bodies are deliberately dropped: they can hold Secret data, and the
    # chain must never become the place where credentials leak to every auditor.
    # The detail is built with its keys in sorted order at every level, which is what lets
    # AuditChain.rows encode it with _encode_sorted_object.
    target = None
    obj = None
    if ref:
        target = ref.get("resource") or None
        sub = ref.get("subresource")
        if target and sub and type(sub) is str:
            target = f"{target}/{sub}"
        obj = {k: v for k in _OBJECT_REF_KEYS if type(v := ref.get(k)) is str and v}
    agent, imp, ann = get("userAgent"), get("impersonatedUser"), get("annotations")
    groups = user.get("groups")
    # The payload's own lists and dicts are used as they are when they already have the
    # right form (the apiserver writes map keys sorted): fewer objects per event means less
    # garbage-collector work, which on this path costs as much as some of the encoding.
    # K8sBatch.drafts() copies them, so drafts never share objects with the payload.
    detail: dict[str, Any] = {}
    if type(ann) is dict:
        if not (_ONLY_STR.issuperset(map(type, ann.values())) and _ONLY_STR.issuperset(map(type, ann))):
            ann = {k: v for k, v in ann.items() if type(k) is str and type(v) is str}
        if len(ann) > 1 and not _sorted_keys(ann):
            ann = dict(sorted(ann.items()))
        detail["annotations"] = ann
    detail["auditID"] = audit_id
    detail["code"] = code
    if type(groups) is list:
        detail["groups"] = (
            groups if _ONLY_STR.issuperset(map(type, groups)) else [g for g in groups if type(g) is str]
        )
    if type(imp) is dict and type(imp.get("username")) is str:
        detail["impersonatedUser"] = imp["username"]
    detail["level"] = level
    if obj:
        detail["objectRef"] = obj
    detail["requestURI"] = uri
    detail["sourceIPs"] = ips
    detail["stage"] = stage
    if type(agent) is str:
        detail["userAgent"] = agent
    # The actor and action columns are bounded (ACTOR_MAX, ACTION_MAX characters); a longer
    # user name or derived action — a long non-resource URL, say — is cut with "…" and kept
    # whole in the detail, so the hashed record loses nothing.
    action = f"{verb} {target or uri.split('?', 1)[0]}"
    if len(action) > ACTION_MAX or len(username) > ACTOR_MAX:
        if len(action) > ACTION_MAX:
            detail["action"] = action
            action = _bounded(action, ACTION_MAX)
        if len(username) > ACTOR_MAX:
            detail["actor"] = username
            username = _bounded(username, ACTOR_MAX)
        detail = dict(sorted(detail.items()))
    return username, action, _k8s_outcome(stage, code), detail, when


@dataclass(frozen=True, slots=True)
class K8sRejected:
    """One event that was not accepted: where it was (``items[3]`` / ``line 4``), and why."""

    where: str
    audit_id: str | None
    problems: tuple[K8sProblem, ...]


@dataclass(frozen=True, slots=True)
class K8sBatch:
    """One ``audit.k8s.io/v1`` ``EventList``, checked and converted by :func:`k8s_batch`, in batch
    order: per event the fields of its entry (:data:`_K8sEvent`).  :meth:`AuditChain.rows` links
    it directly — the ingest hot path, no :class:`EntryDraft` per event; :meth:`drafts` gives the
    same entries as drafts (what :func:`k8s_event_list_to_drafts` returns)."""

    events: tuple[_K8sEvent, ...]
    _sealed: object = field(default=None, repr=False, compare=False)
    #: events that could not be accepted; each is also in ``events`` as a ``k8s.audit.rejected``
    #: entry saying why (made by :func:`k8s_ingest`)
    rejected: tuple[K8sRejected, ...] = ()
    """``_SEALED`` when made by :func:`k8s_batch`: only then are the events trusted to be what
    the converter makes (a batch built by hand is linked through its drafts, fully checked)."""

    def __len__(self) -> int:
        return len(self.events)

    def drafts(self) -> list[EntryDraft]:
        """The events as drafts; each detail a fresh copy (the batch's may share the payload's
        lists and dicts)."""
        return [
            EntryDraft(
                actor=actor,
                action=action,
                outcome=outcome,
                source="kubernetes",
                detail=json.loads(_encode_sorted_object(detail)),
                ts=when,
                detail_is_json=True,
            )
            for actor, action, outcome, detail, when in self.events
        ]


def k8s_batch(payload: Any, *, received_at: datetime) -> K8sBatch:
    """Check and convert an ``audit.k8s.io/v1`` ``EventList``, in batch order.

    ``received_at`` stands in for events that carry neither ``stageTimestamp`` nor
    ``requestReceivedTimestamp``.  A malformed batch raises :class:`K8sAuditError`
    listing every problem with its path; nothing is returned, so nothing is stored.
    One ``auditID`` may appear at several stages; each stage is its own entry.
    """
    if type(payload) is not dict:
        raise K8sAuditError([K8sProblem("$", "body must be a JSON object (an EventList)")])
    problems: list[K8sProblem] = []
    if payload.get("apiVersion") != "audit.k8s.io/v1":
        got = payload.get("apiVersion")
        problems.append(K8sProblem("apiVersion", f"must be 'audit.k8s.io/v1', got {got!r}"))
    if payload.get("kind") != "EventList":
        problems.append(K8sProblem("kind", f"must be 'EventList', got {payload.get('kind')!r}"))
    items = payload.get("items")
    if not isinstance(items, list):
        problems.append(K8sProblem("items", "required list of Events"))
        raise K8sAuditError(problems)
    events = [_k8s_event(ev, i, received_at, problems) for i, ev in enumerate(items)]
    if problems:
        raise K8sAuditError(problems)
    return K8sBatch(tuple(e for e in events if e is not None), _SEALED)


def k8s_event_list_to_drafts(payload: Any, *, received_at: datetime) -> list[EntryDraft]:
    """Convert an ``audit.k8s.io/v1`` ``EventList`` into chain drafts, in batch order
    (:func:`k8s_batch`, as drafts)."""
    return k8s_batch(payload, received_at=received_at).drafts()


def _rejection(
    ev: Any, where: str, problems: list[K8sProblem], received_at: datetime
) -> tuple[_K8sEvent, K8sRejected]:
    """The entry that records an unacceptable event: who it names (if anyone), where, and why."""
    audit_id = ev.get("auditID") if type(ev) is dict else None
    audit_id = audit_id if type(audit_id) is str and audit_id else None
    user = ev.get("user") if type(ev) is dict else None
    actor = user.get("username") if type(user) is dict else None
    actor = _bounded(actor, ACTOR_MAX) if type(actor) is str and actor else "unknown"
    shown = [_bounded(str(p), 500) for p in problems[:20]]
    detail = {"auditID": audit_id, "problems": shown, "where": where}
    return (actor, REJECTED_ACTION, "failed", detail, received_at), K8sRejected(
        where, audit_id, tuple(problems)
    )


def _ingest_events(items: list[tuple[str, Any, str | None]], received_at: datetime) -> K8sBatch:
    """Convert each event on its own: good ones become entries, bad ones rejection entries."""
    events: list[_K8sEvent] = []
    rejected: list[K8sRejected] = []
    for where, ev, log_problem in items:
        problems: list[K8sProblem] = []
        if log_problem is not None:
            problems.append(K8sProblem(where, log_problem))
            converted = None
        else:
            converted = _k8s_event(ev, 0, received_at, problems)
            problems = [K8sProblem(where + p.path.removeprefix("items[0]"), p.message) for p in problems]
        if converted is not None and not problems:
            events.append(converted)
            continue
        entry, why = _rejection(ev, where, problems, received_at)
        events.append(entry)
        rejected.append(why)
    return K8sBatch(tuple(events), _SEALED, tuple(rejected))


MAX_DEPTH = 64
"""Kubernetes objects in requestObject/responseObject nest about 20 levels; 64 leaves room."""


def k8s_ingest(body: bytes | str, *, received_at: datetime) -> K8sBatch:
    """What the apiserver sent, event by event: a webhook ``EventList`` or log-backend JSON lines.

    Unlike :func:`k8s_batch`, one bad event does not refuse the batch: the webhook backend would
    retry it and then drop it, losing every good event with it.  Each event that cannot be
    accepted becomes a ``k8s.audit.rejected`` entry naming where it was and why (its body is not
    kept), in batch order, and is listed in :attr:`K8sBatch.rejected`.

    * A JSON object with ``items`` is an ``EventList``: its envelope must be right
      (``apiVersion: audit.k8s.io/v1``, ``kind: EventList``), else :class:`K8sAuditError`.
    * Otherwise the body is the log backend's format: one ``Event`` per line (``kind: Event``,
      ``apiVersion`` ``audit.k8s.io/v1`` — or ``v1beta1``, whose kept fields are the same).  A
      line that is not JSON is rejected by its line number.  A body of which no line is JSON is
      :class:`K8sAuditError`.
    """
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise K8sAuditError([K8sProblem("$", f"body is not UTF-8 (byte {exc.start})")]) from None
    else:
        text = body
    try:
        doc = loads_bounded(text, max_depth=MAX_DEPTH)
    except JsonLimitError as exc:
        if not exc.message.startswith("not JSON"):  # JSON beyond a bound: depth, integer size
            raise K8sAuditError([K8sProblem("$", str(exc))]) from None
        doc = _NOT_JSON
    if type(doc) is dict and ("items" in doc or doc.get("kind") == "EventList"):
        problems: list[K8sProblem] = []
        if doc.get("apiVersion") != "audit.k8s.io/v1":
            problems.append(
                K8sProblem("apiVersion", f"must be 'audit.k8s.io/v1', got {doc.get('apiVersion')!r}")
            )
        if doc.get("kind") != "EventList":
            problems.append(K8sProblem("kind", f"must be 'EventList', got {doc.get('kind')!r}"))
        items = doc.get("items")
        if not isinstance(items, list):
            problems.append(K8sProblem("items", "required list of Events"))
        if problems:
            raise K8sAuditError(problems)
        assert isinstance(items, list)
        return _ingest_events([(f"items[{i}]", ev, None) for i, ev in enumerate(items)], received_at)
    lines: list[tuple[str, Any, str | None]] = []
    if doc is not _NOT_JSON:
        lines.append(("line 1", doc, _log_problem(doc)))
    else:
        parsed = 0
        for n, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                ev = loads_bounded(raw, max_depth=MAX_DEPTH)
            except JsonLimitError as exc:
                lines.append((f"line {n}", None, str(exc)))
                continue
            parsed += 1
            lines.append((f"line {n}", ev, _log_problem(ev)))
        if not parsed:
            what = (
                "an EventList nor JSON lines" if text.strip() else "an EventList nor JSON lines: it is empty"
            )
            raise K8sAuditError([K8sProblem("$", f"body is neither {what}")])
    return _ingest_events(lines, received_at)


_NOT_JSON = object()


def _log_problem(ev: Any) -> str | None:
    """Why a log-backend line is not an audit Event (``None`` if it is one to check further)."""
    if type(ev) is not dict:
        return "each line must be an audit Event object"
    if ev.get("kind") != "Event":
        return f"kind must be 'Event', got {ev.get('kind')!r}"
    if ev.get("apiVersion") not in _LOG_VERSIONS:
        return f"apiVersion must be one of {sorted(_LOG_VERSIONS)}, got {ev.get('apiVersion')!r}"
    return None
