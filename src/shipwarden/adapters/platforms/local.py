"""Local platform: instances are real processes on free loopback ports.

The embedded default target (E1): what a Kubernetes Deployment would be on a
cluster is here a set of OS processes, each told its port through the
environment.  Processes run in their own session so they outlive the CLI that
started them (a deployment survives its driver being killed), and the
registry of what runs is a JSON file per service in the state directory,
written *before* a process is spawned and updated after — so a restarted
controller knows every process it may have started.

A process is identified by (pid, kernel start time), never by pid alone, so a
recycled pid is not mistaken for our instance.

A crash between writing the intent and recording the pid leaves a pid-less
entry.  Each process carries its instance id in its environment
(``SHIPWARDEN_INSTANCE_ID``), so the next look at the registry settles such an
entry: the orphan is adopted if it was spawned, the entry dropped if it never was.

A start either starts every instance it was asked for or raises
:class:`PlatformError` and leaves none behind: the command, environment and
working directory are expanded and checked before anything is spawned (an
undefined ``{placeholder}``, an environment name with ``=`` or whitespace, a
working directory that does not exist for that version each get their own
message), and instances this call started before a later one failed are
stopped again.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from shipwarden.adapters.net import free_port
from shipwarden.adapters.platforms.base import Instance, InstanceState, PlatformError
from shipwarden.domain.policy import ServiceSpec

INSTANCE_ENV = "SHIPWARDEN_INSTANCE_ID"
ZONE_ENV = "SHIPWARDEN_ZONE"
"""The instance's zone, in its environment (and ``{zone}`` in its command): a local "zone" is a
label — the processes share one machine — which is what the rollout and the router act on."""
PLACEHOLDERS = ("version", "port", "service", "python", "zone")
"""What ``run.command``, ``run.env`` values and ``run.workdir`` may use."""


def _expand(service: str, version: str, where: str, text: str, subst: dict[str, str]) -> str:
    try:
        return text.format(**subst)
    except (KeyError, IndexError, AttributeError) as exc:
        known = ", ".join(f"{{{k}}}" for k in PLACEHOLDERS)
        name = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise PlatformError(
            f"cannot start {service} {version}: {where} {text!r} uses {{{name}}}, "
            f"which is not defined (defined: {known})"
        ) from None
    except ValueError as exc:  # "{" without "}", a bad format spec
        raise PlatformError(f"cannot start {service} {version}: {where} {text!r}: {exc}") from None


def _bad_env_name(name: str) -> bool:
    return not name or "=" in name or "\0" in name or any(c.isspace() for c in name)


@dataclass
class _Entry:
    id: str
    version: str
    port: int
    pid: int | None
    starttime: str | None
    log: str
    started_at: float | None = None  # wall clock, for the health start timeout after a resume
    zone: str | None = None


def _proc_starttime(pid: int) -> str | None:
    """Kernel start time of ``pid`` (field 22 of /proc/pid/stat), None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat[stat.rindex(")") + 2 :].split()
    if rest[0] in ("Z", "X"):
        return None
    return rest[19]


def _pids_by_instance_id(ids: set[str]) -> dict[str, tuple[int, str]]:
    """Live processes whose environment names one of ``ids``: {id: (pid, start time)}."""
    wanted = {f"{INSTANCE_ENV}={i}".encode(): i for i in ids}
    found: dict[str, tuple[int, str]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            environ = (d / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        for var in environ.split(b"\0"):
            if var in wanted:
                started = _proc_starttime(int(d.name))
                if started is not None:
                    found[wanted[var]] = (int(d.name), started)
                break
    return found


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class LocalPlatform:
    def __init__(self, state_dir: Path, base_dir: Path | None = None, host: str = "127.0.0.1") -> None:
        self.state_dir = state_dir
        self.base_dir = base_dir or Path.cwd()  # relative workdirs resolve against the policy's folder
        self.host = host
        (state_dir / "instances").mkdir(parents=True, exist_ok=True)
        (state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._http = httpx.Client(trust_env=False)
        self._lock = threading.RLock()  # start() and the pid-less settlement never interleave

    # -- registry ----------------------------------------------------------------------------
    def _path(self, service: str) -> Path:
        return self.state_dir / "instances" / f"{service}.json"

    def _load(self, service: str) -> list[_Entry]:
        try:
            return [_Entry(**e) for e in json.loads(self._path(service).read_text())]
        except FileNotFoundError:
            return []

    def _save(self, service: str, entries: list[_Entry]) -> None:
        path = self._path(service)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(e) for e in entries], indent=1))
        os.replace(tmp, path)

    # -- Platform ----------------------------------------------------------------------------
    def start(self, spec: ServiceSpec, version: str, count: int, zone: str | None = None) -> list[Instance]:
        with self._lock:
            return self._start(spec, version, count, zone)

    def _launch(
        self, spec: ServiceSpec, version: str, port: int, iid: str, zone: str | None = None
    ) -> tuple[list[str], dict[str, str], Path]:
        """argv, environment and working directory of one instance; PlatformError if any is invalid."""
        name, run = spec.name, spec.run
        subst = {"version": version, "port": str(port), "service": name, "python": sys.executable}
        subst["zone"] = zone or ""
        argv = [_expand(name, version, "run.command", a, subst) for a in run.command]
        extra = {k: _expand(name, version, f"run.env.{k}", v, subst) for k, v in run.env.items()}
        for key in (*extra, run.port_env):
            if _bad_env_name(key):
                raise PlatformError(
                    f"cannot start {name} {version}: {key!r} is not a valid environment variable name "
                    "(empty, or has '=', whitespace or NUL)"
                )
        env = {**os.environ, **extra, run.port_env: str(port), INSTANCE_ENV: iid}
        if zone is not None:
            env[ZONE_ENV] = zone
        cwd = self.base_dir
        if run.workdir:
            cwd = self.base_dir / _expand(name, version, "run.workdir", run.workdir, subst)
            if not cwd.is_dir():
                raise PlatformError(
                    f"cannot start {name} {version}: workdir {run.workdir!r} is {cwd}, which does not exist"
                )
        return argv, env, cwd

    def _start(self, spec: ServiceSpec, version: str, count: int, zone: str | None) -> list[Instance]:
        started: list[_Entry] = []
        try:
            for _ in range(count):
                started.append(self._start_one(spec, version, zone))
        except BaseException:
            self.stop([self._instance(spec.name, e) for e in started], 0)  # all or nothing
            raise
        return [self._instance(spec.name, e) for e in started]

    def _start_one(self, spec: ServiceSpec, version: str, zone: str | None) -> _Entry:
        port = free_port(self.host)
        iid = f"{spec.name}-{version}-{secrets.token_hex(3)}"
        argv, env, cwd = self._launch(spec, version, port, iid, zone)  # raises before anything is recorded
        log = str(self.state_dir / "logs" / f"{iid}.log")
        entry = _Entry(iid, version, port, None, None, log, zone=zone)
        entries = self._settled(spec.name)
        entries.append(entry)
        self._save(spec.name, entries)  # intent first: a crash now leaves a known, pid-less entry
        try:
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:  # ValueError: a NUL byte
            entries.remove(entry)
            self._save(spec.name, entries)
            raise PlatformError(f"cannot start {argv[0]!r} for {spec.name} {version}: {exc}") from exc
        entry.pid = proc.pid
        entry.starttime = _proc_starttime(proc.pid)
        entry.started_at = time.time()
        self._save(spec.name, entries)
        return entry

    def _instance(self, service: str, e: _Entry) -> Instance:
        if e.pid is None:
            state = InstanceState.DEAD
        else:
            _reap(e.pid)
            now = _proc_starttime(e.pid)
            state = InstanceState.RUNNING if now is not None and now == e.starttime else InstanceState.DEAD
        return Instance(e.id, service, e.version, f"{self.host}:{e.port}", e.pid, state, e.started_at, e.zone)

    def instances(self, service: str) -> list[Instance]:
        with self._lock:
            return [self._instance(service, e) for e in self._settled(service)]

    def _settled(self, service: str) -> list[_Entry]:
        """The registry with every pid-less entry (an interrupted start) adopted or dropped."""
        entries = self._load(service)
        pending = [e for e in entries if e.pid is None]
        if not pending:
            return entries
        found = _pids_by_instance_id({e.id for e in pending})
        kept = []
        for e in entries:
            if e.pid is None:
                if e.id not in found:
                    continue  # the process was never spawned
                e.pid, e.starttime = found[e.id]
                e.started_at = time.time()  # unknown: give it the full start time-out from now
            kept.append(e)
        self._save(service, kept)
        return kept

    def healthy(self, spec: ServiceSpec, instance: Instance) -> bool:
        if instance.state is not InstanceState.RUNNING:
            return False
        try:
            r = self._http.get(f"http://{instance.address}{spec.health.path}", timeout=spec.health.timeout)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def stop(self, instances: list[Instance], grace_s: float) -> None:
        """SIGTERM every instance, wait up to ``grace_s``, SIGKILL the rest, then forget them."""
        if not instances:
            return
        by_service: dict[str, set[str]] = {}
        for inst in instances:
            by_service.setdefault(inst.service, set()).add(inst.id)
            if inst.pid is not None and inst.state is InstanceState.RUNNING:
                try:
                    os.kill(inst.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace_s
        pending = [i for i in instances if i.pid is not None and i.state is InstanceState.RUNNING]
        while pending and time.monotonic() < deadline:
            pending = [
                i for i in pending if self._instance(i.service, self._entry(i)).state is InstanceState.RUNNING
            ]
            if pending:
                time.sleep(0.05)
        for inst in pending:
            try:
                os.kill(inst.pid, signal.SIGKILL)  # type: ignore[arg-type]
            except ProcessLookupError:
                pass
            _reap(inst.pid)  # type: ignore[arg-type]
        for service, ids in by_service.items():
            self._save(service, [e for e in self._load(service) if e.id not in ids])

    def _entry(self, inst: Instance) -> _Entry:
        port = int(inst.address.rsplit(":", 1)[1])
        return _Entry(
            inst.id,
            inst.version,
            port,
            inst.pid,
            next((e.starttime for e in self._load(inst.service) if e.id == inst.id), None),
            "",
        )

    def forget_dead(self, service: str) -> list[Instance]:
        """Drop registry entries of processes that are gone; returns what was dropped."""
        entries = self._settled(service)
        dead = [e for e in entries if self._instance(service, e).state is InstanceState.DEAD]
        if dead:
            self._save(service, [e for e in entries if e not in dead])
        return [self._instance(service, e) for e in dead]
