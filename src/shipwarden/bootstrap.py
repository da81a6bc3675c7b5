"""Wiring: builds the store, platform, router and services from settings.

The only place that constructs adapters; nothing is built at import time.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shipwarden.adapters.metrics.base import MetricProvider, make_provider
from shipwarden.adapters.store.engine import make_engine, migrate
from shipwarden.adapters.store.repository import Store
from shipwarden.adapters.witness import HeadFile
from shipwarden.domain._yaml import MAX_BYTES
from shipwarden.domain.access import IpNetwork, MfaPolicy, SessionPolicy, parse_networks
from shipwarden.domain.alerting import Rollback
from shipwarden.domain.alerting.monitoring import CustomCondition
from shipwarden.domain.audit import AuditChain
from shipwarden.domain.dr.topology import Credentials, Endpoint
from shipwarden.domain.oncall import Escalation, OnCallPolicy, Target
from shipwarden.domain.policy import (
    LoadedPolicy,
    PlatformName,
    PolicyError,
    PolicyIssue,
    RouterDriver,
    load_policy_text,
)
from shipwarden.ports.alerting import Channel, EscalationSink
from shipwarden.ports.databases import WriteLoad
from shipwarden.ports.incidents import IncidentSink, MetricHistory, OnCallLookup
from shipwarden.ports.oncall import Contact, Notifier
from shipwarden.ports.platform import Platform
from shipwarden.ports.routing import TrafficRouter
from shipwarden.security.envelope import Envelope, Keyring, generate_kek, load_kek_file
from shipwarden.security.signing import (
    fingerprint,
    generate_key,
    load_private_key,
    load_public_key,
    public_pem,
    save_private_key,
    save_public_key,
    write_new,
)
from shipwarden.services.access import AccessService
from shipwarden.services.alerting.escalation import OnCallEscalation
from shipwarden.services.alerting.service import AlertingService
from shipwarden.services.alerts import RolloutAlerts
from shipwarden.services.analysis import AnalysisController
from shipwarden.services.audit import AuditService
from shipwarden.services.dr.context import DrContext
from shipwarden.services.incidents import IncidentReports, IncidentService, related_from
from shipwarden.services.oncall import EscalationEngine, LinkSigner, Rota, Watchdog
from shipwarden.services.rollout import RolloutService
from shipwarden.settings import Settings

if TYPE_CHECKING:
    from shipwarden.services.changes import ChangeDrivers, ChangeService


def load_policy(path: Path) -> LoadedPolicy:
    """The one way a policy file is loaded (``policy check``, every command, the API, the controller):
    its exact bytes through ``load_policy_text``.  Any problem is a ``PolicyError``."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)  # the loader refuses anything longer; never read a huge file whole
    except OSError as exc:
        raise PolicyError(
            [PolicyIssue(str(path), None, "", f"cannot read policy file: {exc.strerror or exc}")]
        ) from None
    return load_policy_text(raw, str(path))


def _store(settings: Settings, clock: Callable[[], float] = time.time) -> Store:
    """The one place the store is constructed: the settings' database, migrated to head."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    migrate(engine)
    return Store(engine, clock=clock)


def open_store(settings: Settings) -> Store:
    """The store alone, for tools that need nothing else (benchmarks, drills, fixtures); it signs the
    audit checkpoints its appends make due (and appends them to the witness file) like
    ``build_service``'s.  Commands and servers use ``build_service``'s store instead."""
    store = _store(settings)
    key = load_signing_key(settings)
    chain = AuditChain(lambda: datetime.now(UTC), checkpoint_every=settings.audit_checkpoint_every)
    store.attach_sealer(chain.sealer(key, fingerprint(key.public_key())), HeadFile(settings.head_file).append)
    return store


# -- driver registries: the policy names a driver (``routing.driver``, ``run.platform``), one line
# -- here builds it.  Drivers are imported only when a policy uses them.
def _nginx(state_dir: Path, admin_port: int | None) -> TrafficRouter:
    from shipwarden.adapters.routers.nginx import NginxRouter

    return NginxRouter(state_dir, admin_port=admin_port)


def _haproxy(state_dir: Path, admin_port: int | None) -> TrafficRouter:
    from shipwarden.adapters.routers.haproxy import HaproxyRouter

    return HaproxyRouter(state_dir, admin_port=admin_port)


def _local(settings: Settings, policy: LoadedPolicy) -> Platform:
    from shipwarden.adapters.platforms.local import LocalPlatform

    return LocalPlatform(settings.state_dir, base_dir=Path(policy.source).resolve().parent)


ROUTERS: dict[str, Callable[[Path, int | None], TrafficRouter]] = {
    "nginx": _nginx,
    "haproxy": _haproxy,
}
"""``routing.driver`` → the driver (state dir ``state_dir/<name>``, admin port or None: its own)."""
PLATFORMS: dict[str, Callable[[Settings, LoadedPolicy], Platform]] = {"local": _local}
"""``run.platform`` → the platform."""
assert set(ROUTERS) == set(get_args(RouterDriver)) and set(PLATFORMS) == set(get_args(PlatformName))


def make_router(settings: Settings, policy: LoadedPolicy | None = None) -> TrafficRouter:
    """The router of the policy's services: the one driver they name (``settings.router_admin_port``
    is its admin port), or a ``RouterSet`` over each driver named (the admin port is nginx's)."""
    names = sorted({s.routing.driver for s in policy.policy.services}) if policy is not None else ["nginx"]
    if len(names) == 1:
        return ROUTERS[names[0]](settings.state_dir / names[0], settings.router_admin_port or None)
    from shipwarden.adapters.routers.routerset import RouterSet

    assert policy is not None
    admin = settings.router_admin_port or None
    routers = {n: ROUTERS[n](settings.state_dir / n, admin if n == "nginx" else None) for n in names}
    return RouterSet(routers, {s.name: s.routing.driver for s in policy.policy.services})


def make_platform(settings: Settings, policy: LoadedPolicy) -> Platform:
    """The platform the policy's services run on (one for now: ``local``)."""
    names = {s.run.platform for s in policy.policy.services}
    if len(names) != 1:
        raise PolicyError([PolicyIssue(policy.source, None, "services[].run.platform",
                                       f"one platform per policy for now, not {sorted(names)}")])  # fmt: skip
    return PLATFORMS[names.pop()](settings, policy)


NEWRELIC_KEY_SECRET = "NEWRELIC_API_KEY"
"""The secret holding the New Relic User API key when ``SHIPWARDEN_NEWRELIC_API_KEY`` is not set."""


def make_providers(
    settings: Settings, secrets: Callable[[str], str | None] | None = None
) -> dict[str, MetricProvider]:
    """The metric providers the settings configure (none is required unless a policy uses it).

    The New Relic key comes from the environment or, encrypted at rest, from the secret
    store (``shipwarden secret set NEWRELIC_API_KEY``) through ``secrets``."""
    providers: dict[str, MetricProvider] = {}
    if settings.prometheus_url:
        providers["prometheus"] = make_provider("prometheus", base_url=settings.prometheus_url)
    nr_key = settings.newrelic_api_key
    if not nr_key and settings.newrelic_account_id and secrets is not None:
        nr_key = secrets(NEWRELIC_KEY_SECRET)
    if nr_key and settings.newrelic_account_id:
        providers["newrelic"] = make_provider(
            "newrelic",
            api_key=nr_key,
            account_id=settings.newrelic_account_id,
            region=settings.newrelic_region,
        )
    return providers


def secret_lookup(
    settings: Settings, store: Store, access_service: AccessService | None = None
) -> Callable[[str], str | None]:
    """Resolve a secret by name: ``SHIPWARDEN_SECRET_<NAME>`` first, else the encrypted secret
    store (unknown or undecryptable: ``None``, i.e. not configured).  Without
    ``access_service`` the keyring is loaded on first use only."""
    from shipwarden.services.access import SecretStore
    from shipwarden.services.changes import env_secrets

    found = [access_service.secret_store] if access_service is not None else []

    def lookup(name: str) -> str | None:
        value = env_secrets(name)
        if value:
            return value
        if not found:
            found.append(SecretStore(store.access, Envelope(load_keyring(settings)), store))
        try:
            return found[0].get_secret(name)
        except Exception:
            return None

    return lookup


@dataclass
class App:
    settings: Settings
    store: Store
    platform: Platform
    router: TrafficRouter
    rollout: RolloutService
    actor: str


def make_rollout(
    settings: Settings, store: Store, policy: LoadedPolicy, access: AccessService | None = None
) -> tuple[Platform, TrafficRouter, RolloutService]:
    """The platform, router and rollout service — the same for the CLI and the API service, so a
    deployment started by either has the same metric providers and alerts."""
    platform = make_platform(settings, policy)
    router = make_router(settings, policy)
    secrets = secret_lookup(settings, store, access)
    analysis = AnalysisController(store, router, make_providers(settings, secrets), time.time)
    rollout = RolloutService(
        store, platform, router, policy, tick_s=settings.tick_s, analysis=analysis,
        alerts=_rollout_alerts(settings, store, policy, secrets),
    )  # fmt: skip
    return platform, router, rollout


def _rollout_alerts(
    settings: Settings, store: Store, policy: LoadedPolicy, secrets: Callable[[str], str | None]
) -> RolloutAlerts | None:
    """Rollout alerts: to the policy's ``alerts.rollout`` URLs, and into the alerting pipeline
    when the policy has an ``alerting`` section (rollback and failed by default)."""
    from shipwarden.domain.alerts import RolloutAlertSpec, RolloutEvent

    alerts = policy.policy.alerts
    spec = alerts.rollout if alerts is not None else None
    pipeline = make_alerting(settings, store, policy, secrets=secrets) if policy.policy.alerting else None
    if spec is None and pipeline is None:
        return None
    if spec is None:  # the pipeline only: the default events, no URLs of its own
        spec = RolloutAlertSpec.model_construct(urls=[], events=[RolloutEvent.ROLLBACK, RolloutEvent.FAILED])
    sink = partial(pipeline.ingest, source="rollout") if pipeline is not None else None
    return RolloutAlerts(store, spec, secrets, sink=sink, direct=bool(spec.urls))


def build(settings: Settings, policy: LoadedPolicy, *, services: Services | None = None) -> App:
    """The rollout machinery of ``policy`` (CLI rollout commands, the demos): a view of the one
    composition, ``build_service``.  ``services``: the process's, when it built one already
    without a policy (the CLI's access check) — its store and access, with ``policy``'s rollout;
    so one command opens one engine and migrates once."""
    svc = services if services is not None else build_service(settings, policy)
    rollout = svc.rollout
    if rollout is None or rollout.loaded is not policy:
        rollout = make_rollout(settings, svc.store, policy, svc.access)[2]
    actor = settings.actor or getpass.getuser()
    return App(settings, svc.store, rollout.platform, rollout.router, rollout, actor)


# -- the API service: access control, audit, rollout (issue 5) -------------------------------------
@dataclass
class Services:
    """Everything the HTTP API and the admin CLI use, built once per process."""

    settings: Settings
    store: Store
    access: AccessService
    audit: AuditService
    rollout: RolloutService | None
    clock: Callable[[], datetime]
    trusted_proxies: tuple[IpNetwork, ...]
    signing_public_pem: bytes
    incidents: Incidents | None = None
    oncall: OnCallParts | None = None
    run_engines: bool = True
    """Start the escalation engine with the app (tests that drive it by hand turn this off)."""
    alerting: AlertingService | None = None
    store_counts: Callable[[], dict[str, Any]] = dict
    """What ``GET /metrics`` reads from the store at scrape time."""


def _kek_id(key: bytes) -> str:
    return "f" + hashlib.sha256(key).hexdigest()[:12]


def load_keyring(settings: Settings) -> Keyring:
    """KEKs from ``SHIPWARDEN_KEKS``, else from ``kek_files``, else a generated state_dir/keys/kek-1.key."""
    if settings.keks:
        return Keyring.from_env(settings.keks)
    files = list(settings.kek_files)
    if not files:
        default = settings.state_dir / "keys" / "kek-1.key"
        if not default.exists():
            default.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with suppress(FileExistsError):  # another process starting at once was first
                write_new(default, base64.b64encode(generate_kek()), 0o600)
        files = [default]
    keys = {}
    for path in files:
        key = load_kek_file(path)
        keys[_kek_id(key)] = key
    return Keyring(keys, _kek_id(load_kek_file(files[0])))


def load_signing_key(settings: Settings) -> Ed25519PrivateKey:
    path = settings.signing_key_file or settings.state_dir / "keys" / "signing.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = generate_key()
        with suppress(FileExistsError):  # another process starting at once was first: its key
            save_private_key(key, path)
            pub = path.with_suffix(".pub")
            if not pub.exists():
                save_public_key(key.public_key(), pub)
    return load_private_key(path)


def build_service(
    settings: Settings,
    policy: LoadedPolicy | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
) -> Services:
    """Wire the API service.  ``policy`` None: deployment endpoints answer 503 (no policy loaded)."""
    from shipwarden.services.access import AccessConfig

    now = clock or (lambda: datetime.now(UTC))
    store = _store(settings, clock=lambda: now().timestamp())
    key = load_signing_key(settings)
    extra = {}
    for p in settings.audit_public_keys:
        pub = load_public_key(p)
        extra[fingerprint(pub)] = pub
    config = AccessConfig(
        session=SessionPolicy(
            idle=timedelta(seconds=settings.session_idle_s),
            absolute=timedelta(seconds=settings.session_absolute_s),
            max_concurrent=settings.session_max_concurrent,
        ),
        mfa=MfaPolicy(window=timedelta(seconds=settings.mfa_window_s)),
        mfa_required=settings.mfa_required,
        role_cidrs=settings.role_cidrs,
        teams={s.name: policy.policy.team for s in policy.policy.services} if policy is not None else {},
    )
    access = AccessService(store, Envelope(load_keyring(settings)), now, config)
    audit = AuditService(
        store,
        key,
        now,
        checkpoint_every=settings.audit_checkpoint_every,
        extra_public_keys=extra,
        witness=HeadFile(settings.head_file),
    )
    rollout = None
    if policy is not None:
        _, _, rollout = make_rollout(settings, store, policy, access)
    secrets = secret_lookup(settings, store, access)
    oncall = None
    if policy is not None and policy.policy.oncall is not None:
        oncall = make_oncall(settings, store, lambda: policy, clock=lambda: now().timestamp(),
                             secrets=secrets)  # fmt: skip
    incidents = make_incidents(settings, store, rollout=rollout, clock=now, secrets=secrets,
                               oncall=oncall.rota if oncall is not None else None)  # fmt: skip
    if oncall is not None:
        oncall.engine.on_acknowledged = _ack_incident(incidents.service)
    alerting = None
    if policy is not None:
        alerting = make_alerting(
            settings, store, policy, secrets=secrets, incidents=incidents.service,
            escalation=OnCallEscalation(oncall.engine) if oncall is not None else None,
            clock=lambda: now().timestamp(),
        )  # fmt: skip
    from shipwarden.adapters.store.alerting_repo import store_counts

    return Services(
        settings=settings,
        store=store,
        access=access,
        audit=audit,
        rollout=rollout,
        clock=now,
        trusted_proxies=parse_networks(settings.trusted_proxies),
        signing_public_pem=public_pem(key.public_key()),
        incidents=incidents,
        oncall=oncall,
        alerting=alerting,
        store_counts=partial(store_counts, store),
    )


# -- the change pipeline: CI webhooks, evidence, gates, merges, delivery (issues 6, 11) -------------
def change_drivers() -> ChangeDrivers:
    """git for the repository, GitHub for pull-request merges, the two CI providers' webhooks."""
    from shipwarden.adapters.ci.circleci import CircleCiWebhook
    from shipwarden.adapters.ci.github import GitHubClient, GitHubWebhook
    from shipwarden.adapters.vcs.git import GitRepository
    from shipwarden.services.changes import ChangeDrivers

    return ChangeDrivers(
        vcs=GitRepository,
        code_host=lambda token, api_url: GitHubClient(token, base_url=api_url),
        webhooks={"circleci": CircleCiWebhook, "github": GitHubWebhook},
    )


def make_changes(
    settings: Settings,
    store: Store,
    rollout: RolloutService | None,
    policy: LoadedPolicy,
    *,
    access: AccessService | None = None,
    **options: Any,
) -> ChangeService:
    """The change service over ``store`` (the CLI's and the API's: the same drivers, the same
    secrets); ``options``: ``ChangeService``'s (``schedule``, ``refusals``, ``clock``)."""
    from shipwarden.services.changes import ChangeService

    return ChangeService(store, rollout, policy, state_dir=settings.state_dir, drivers=change_drivers(),
                         secrets=secret_lookup(settings, store, access), **options)  # fmt: skip


# -- disaster recovery: databases, backups, failover (issue 14) ------------------------------------
def _write_load(
    listener: Endpoint, rate: float, credentials: Credentials, *, target: Endpoint | None = None,
    source_address: str | None = None,
) -> WriteLoad:  # fmt: skip
    from shipwarden.adapters.databases.mariadb_load import MariaDBWriteLoad

    return MariaDBWriteLoad(credentials, target or listener, rate=rate, source_address=source_address)


def make_dr(
    settings: Settings,
    store: Store,
    policy: LoadedPolicy,
    *,
    secrets: Callable[[str], str | None] | None = None,
    clock: Callable[[], datetime] | None = None,
    actor: str = "shipwarden:dr",
    envelope: Envelope | None = None,
) -> DrContext:
    """The DR context for every database the policy declares: drivers, listener, backup tools,
    streamers, scratch instances and backup storage, all under ``state_dir/dr``."""
    from shipwarden.adapters.databases.listener import HaproxyTcpListener
    from shipwarden.adapters.databases.local_control import LocalInstanceControl
    from shipwarden.adapters.databases.mariadb import MariaDBDriver
    from shipwarden.adapters.databases.mariadb_binlog import MariaDBBinlogStreamer
    from shipwarden.adapters.databases.mariadb_scratch import MariaDBScratch
    from shipwarden.adapters.databases.mariadb_tools import MariaDBBackupTool
    from shipwarden.adapters.databases.partitions import IptablesPartitions
    from shipwarden.adapters.storage.local import LocalBlobStore
    from shipwarden.adapters.store.dr_repo import DrRepo
    from shipwarden.domain.dr.spec import IMPLEMENTED_ENGINES
    from shipwarden.services.dr.context import DatabasePorts, DrContext, DrError

    lookup = secrets or secret_lookup(settings, store)

    def creds(user: str, secret: str | None, what: str) -> Credentials:
        if secret is None:
            return Credentials(user)
        value = lookup(secret)
        if not value:
            raise DrError(
                f"{what}: secret {secret!r} is not set (shipwarden secret set {secret}, "
                f"or SHIPWARDEN_SECRET_{secret.upper().replace('-', '_').replace('.', '_')})"
            )
        return Credentials(user, value)

    root = settings.state_dir / "dr"
    listener = HaproxyTcpListener(root / "listeners")
    databases: dict[str, DatabasePorts] = {}
    for spec in policy.policy.databases:
        if spec.engine not in IMPLEMENTED_ENGINES:
            raise DrError(f"database of {spec.service}: no {spec.engine} driver yet (built: mariadb)")
        what = f"database of {spec.service}"
        admin = creds(spec.credentials.user, spec.credentials.password_secret, what)
        repl = creds(spec.replication.user, spec.replication.password_secret, f"replication of {what}")
        app = spec.application
        application = creds(app.user, app.password_secret, f"application of {what}") if app else None
        timeout = max(0.2, min(1.0, spec.failover.check_interval))
        backup_dir = Path(spec.backup.directory)
        if not backup_dir.is_absolute():
            backup_dir = settings.state_dir / backup_dir
        databases[spec.service] = DatabasePorts(
            spec=spec,
            driver=MariaDBDriver(admin, connect_timeout=timeout, read_timeout=30.0),
            replication=repl,
            listener=listener,
            backup_tool=MariaDBBackupTool(admin, root / "work"),
            streamer=MariaDBBinlogStreamer(root / "archive" / spec.service, repl),
            scratch=MariaDBScratch(root / "scratch", admin, template_cache=root / "templates"),
            blobs=LocalBlobStore(backup_dir),
            write_load=partial(_write_load, Endpoint(spec.listener.host, spec.listener.port)),
            control=LocalInstanceControl(MariaDBDriver(admin), root / "instances" / spec.service),
            application=application,
            partitions=IptablesPartitions(root / "partitions"),
        )
    notify = None
    alerts = policy.policy.alerts
    if alerts is not None and alerts.rollout is not None:
        from shipwarden.services.notify import Notifier

        urls = list(alerts.rollout.urls)

        def notify(service: str, key: str, severity: str, message: str) -> None:
            title = f"[{service}] database: {key}"
            kind: Literal["failure", "warning"] = "failure" if severity == "failure" else "warning"
            Notifier([(n, lookup(n)) for n in urls]).send(title, message, kind)

    return DrContext(
        databases=databases,
        catalogue=DrRepo(store),
        blobs=LocalBlobStore(settings.state_dir / "backups"),
        envelope=envelope or Envelope(load_keyring(settings)),
        clock=clock or (lambda: datetime.now(UTC)),
        actor=actor,
        notify=notify,
    )


def dr_config_items(settings: Settings, store: Store, policy: LoadedPolicy) -> Iterator[tuple[str, bytes]]:
    """The installation's configuration for a configuration backup (policy, sealed secrets, audit
    log and checkpoints, a git bundle of the deployed repository)."""
    from shipwarden.adapters.storage.config_export import config_items

    repos: list[str] = []
    delivery = policy.policy.delivery
    if delivery is not None:
        url = delivery.repository.url
        if "://" not in url and not url.startswith("git@"):
            repos.append(str((Path(policy.source).resolve().parent / url).resolve()))
    return config_items(store, Path(policy.source), repos)


# -- incidents and post-incident reports (D12) -----------------------------------------------------
class RolloutRollback:
    """``ports.incidents.ServiceRollback`` over the store and the rollout service's own rollback."""

    def __init__(self, store: Store, rollout: RolloutService) -> None:
        self.store, self.rollout = store, rollout

    def current(self, service: str) -> tuple[str | None, str | None]:
        active = self.store.active(service)
        return (active.id if active else None), self.store.stable_version(service)[0]

    def deployment(self, deployment_id: str) -> tuple[str, str, str]:
        d = self.store.get(deployment_id)
        return d.service, d.to_version, d.phase.value

    def rollback(self, service: str, *, actor: str) -> str:
        return self.rollout.rollback(service, actor=actor).id


@dataclass
class Incidents:
    service: IncidentService
    reports: IncidentReports
    reports_dir: Path


def make_incidents(
    settings: Settings,
    store: Store,
    *,
    rollout: RolloutService | None = None,
    oncall: OnCallLookup | None = None,
    clock: Callable[[], datetime] | None = None,
    secrets: Callable[[str], str | None] | None = None,
    require_pdf: bool = False,
) -> Incidents:
    """The incident use cases on ``store``: metric history from Prometheus when configured, else the
    analysis samples the store keeps; rollbacks through ``rollout``; commanders from ``oncall``
    (alerting's rota, once it is wired; none: incidents open without a commander)."""
    from shipwarden.adapters.metrics.router_history import PrometheusRouterHistory, SampleHistory
    from shipwarden.adapters.reports.incident import ChromiumReportWriter
    from shipwarden.adapters.routers.common import PROMETHEUS_HISTORY
    from shipwarden.adapters.store.audit_repo import AuditRepo
    from shipwarden.adapters.store.incidents_repo import IncidentRepo, analysis_samples

    providers = make_providers(settings, secrets)
    metrics: MetricHistory
    queries = rollout.router.history_queries if rollout is not None else PROMETHEUS_HISTORY
    if "prometheus" in providers and queries is not None:
        metrics = PrometheusRouterHistory(providers["prometheus"], queries)
    else:
        metrics = SampleHistory(partial(analysis_samples, store))
    service = IncidentService(
        IncidentRepo(store), AuditRepo(store), oncall=oncall, metrics=metrics,
        rollbacks=RolloutRollback(store, rollout) if rollout is not None else None,
        related=related_from(settings.incident_related), clock=clock or (lambda: datetime.now(UTC)),
    )  # fmt: skip
    reports = IncidentReports(service, ChromiumReportWriter(require_pdf=require_pdf))
    return Incidents(service, reports, settings.incident_reports_dir or settings.state_dir / "reports")


# -- alerting (E7, E8) -----------------------------------------------------------------------------
def _rollbacks(store: Store, grace: float) -> list[Rollback]:
    """Rollbacks in progress, or ended less than ``grace`` ago (their symptoms are muted)."""
    from shipwarden.domain.rollout import Phase

    now = time.time()
    out: list[Rollback] = []
    for d in store.history(None, limit=50):
        rolling = d.kind == "rollback" or d.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK)
        if not rolling:
            continue
        if d.finished_at is not None and now - d.finished_at > grace:
            continue
        started = d.created_at if d.kind == "rollback" else (d.detected_at or d.created_at)
        out.append(Rollback(d.service, started, d.finished_at))
    return out


def _recent_changes(store: Store, service: str) -> list[str]:
    """Every page lists the service's last three deployments (deployment awareness)."""
    lines = []
    for d in store.history(service, limit=3):
        when = datetime.fromtimestamp(d.created_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        lines.append(
            f"{when} {d.kind} {d.from_version or '(none)'} -> {d.to_version} by {d.actor}: "
            f"{d.phase.value} ({d.id})"
        )
    return lines


def make_alerting(
    settings: Settings,
    store: Store,
    policy: LoadedPolicy,
    *,
    secrets: Callable[[str], str | None],
    incidents: IncidentSink | None = None,
    escalation: EscalationSink | None = None,
    clock: Callable[[], float] = time.time,
) -> AlertingService | None:
    """The alerting pipeline of the policy's ``alerting`` section (``None`` without one): the
    store's tables, Apprise and PagerDuty channels whose URLs and keys are secrets, the
    incident sink, and rules for Prometheus from the ``monitoring`` section."""
    from shipwarden.adapters.metrics.prometheus_rules import PrometheusRules
    from shipwarden.adapters.notify.apprise_channel import AppriseChannel
    from shipwarden.adapters.notify.pagerduty import PagerDutyChannel
    from shipwarden.adapters.store.alerting_repo import AlertingRepo
    from shipwarden.ports.alerting import DeliveryOutcome, GroupNotice
    from shipwarden.services.alerting.pipeline import AlertEngine, AlertPipeline
    from shipwarden.services.notify import mask_url

    spec = policy.policy.alerting
    if spec is None:
        return None

    class _Unset:
        def __init__(self, target: str) -> None:
            self.name = target

        def deliver(self, notice: GroupNotice) -> DeliveryOutcome:
            return DeliveryOutcome(False, f"secret {self.name.partition(':')[2]!r} is not set")

    def channel_for(target: str) -> Channel:
        kind, _, name = target.partition(":")
        value = secrets(name)
        if not value:
            return _Unset(target)
        if kind == "pagerduty":
            return PagerDutyChannel(name, value, url=settings.pagerduty_url)
        return AppriseChannel(name, value, masked=mask_url(value))

    pipeline = AlertPipeline(
        AlertingRepo(store),
        spec,
        channel_for=channel_for,
        escalation=escalation,
        incidents=incidents,
        rollbacks=partial(_rollbacks, store, spec.rollback_grace),
        context=partial(_recent_changes, store),
        external_url=settings.alert_external_url,
        clock=clock,
    )
    rules = None
    if settings.prometheus_rules_file is not None:
        rules = PrometheusRules(
            settings.prometheus_rules_file,
            reload_url=settings.prometheus_reload_url,
            pid_file=settings.prometheus_pid_file,
        )
    return AlertingService(
        pipeline,
        AlertEngine(pipeline),
        token=partial(secrets, settings.alert_webhook_secret),
        monitoring=policy.policy.monitoring,
        team=policy.policy.team,
        rules_target=rules,
        clock=clock,
    )


def nrql_query(provider: MetricProvider) -> Callable[[CustomCondition, str, float], float | None]:
    """A condition's NRQL through the New Relic provider: its value, or ``None`` (no data)."""
    from shipwarden.adapters.metrics.base import Value

    def query(c: CustomCondition, service: str, at: float) -> float | None:
        assert c.nrql is not None
        m = provider.query(c.nrql, service=service, version="current", window_s=c.window, at=at)
        return m.value if isinstance(m, Value) else None

    return query


def start_wal_checkpoints(svc: Services) -> Callable[[], None]:
    """On SQLite, checkpoint the write-ahead log from a thread of ``serve`` instead of inside the
    commits requests wait for (``adapters/store/wal.py``); returns the function that stops it."""
    if svc.store.engine.dialect.name != "sqlite":
        return lambda: None
    from shipwarden.adapters.store.wal import WalCheckpoints

    try:
        checkpoints = WalCheckpoints(svc.store.engine)
    except ValueError:  # an in-memory database: no log file
        return lambda: None
    return checkpoints.start().stop


def start_alerting(svc: Services) -> Callable[[], None]:
    """Run the alert engine (and the NRQL conditions, when New Relic is configured) in the
    background of ``serve``; returns the function that stops them."""
    import threading

    from shipwarden.services.alerting.service import NrqlConditions

    alerting = svc.alerting
    if alerting is None or alerting.engine is None:
        return lambda: None
    engine = alerting.engine
    engine.start()
    from shipwarden.adapters.notify.apprise_channel import warm_up

    threading.Thread(target=warm_up, name="apprise-warm-up", daemon=True).start()
    if alerting.rules_target is not None and alerting.monitoring is not None:
        # the policy this process serves is the one in force: its rules replace the file (unchanged:
        # nothing done) and Prometheus reloads them
        from shipwarden.services.alerting.service import AlertingError

        try:
            result = alerting.write_rules()
        except AlertingError as exc:
            result = f"refused: {exc.message}"
        outcome = "failed" if result.startswith("refused") else "ok"
        detail = {"file": str(svc.settings.prometheus_rules_file), "result": result[:500]}
        svc.store.audit(actor="alerting", action="alert.rules", outcome=outcome, detail=detail)
    stop = threading.Event()
    conditions = alerting.monitoring.nrql_conditions() if alerting.monitoring is not None else []
    if conditions:
        providers = make_providers(svc.settings, secret_lookup(svc.settings, svc.store, svc.access))
        nr = providers.get("newrelic")
        if nr is not None:
            sink = partial(alerting.ingest, source="nrql")
            nrql = NrqlConditions(conditions, nrql_query(nr), sink, team=alerting.team)
            runner = threading.Thread(target=nrql.loop, args=(stop,), name="nrql-conditions", daemon=True)
            runner.start()

    def stopper() -> None:
        stop.set()
        engine.stop()

    return stopper


# -- on-call and escalation (E8) -------------------------------------------------------------------
@dataclass
class OnCallParts:
    rota: Rota
    engine: EscalationEngine
    watchdog: Watchdog | None


def heartbeat_file(settings: Settings) -> Path:
    """Touched by every running escalation engine each second; ``oncall watchdog`` reads its age."""
    return settings.state_dir / "oncall" / "engine.beat"


def make_watchdog_process(settings: Settings, store: Store, policy: LoadedPolicy) -> Watchdog:
    """``shipwarden oncall watchdog``: the stall check from a process of its own (a whole engine
    process that stops — SIGSTOP, OOM — stops the watchdog thread inside it too)."""
    from shipwarden.adapters.notify.pager import PageNotifier, parse_smtp_url

    oc = policy.policy.oncall
    if oc is None or oc.watchdog is None:
        issue = PolicyIssue(policy.source, None, "oncall.watchdog", "declare who the watchdog pages")
        raise PolicyError([issue])
    rota = Rota(lambda: oc)
    refs = [Target(r.kind, r.name) for r in oc.watchdog.notify]
    smtp = parse_smtp_url(settings.smtp_url, settings.smtp_from) if settings.smtp_url else None
    path = heartbeat_file(settings)

    def beat() -> float:
        try:
            return path.stat().st_mtime
        except FileNotFoundError:
            return 0.0  # no engine has ever run here: stalled

    def record(subject: str, detail: dict[str, object]) -> None:
        store.audit(actor="shipwarden:oncall-watchdog", action="escalation.watchdog",
                    outcome="failed", detail={"subject": subject, **detail})  # fmt: skip

    return Watchdog(beat, PageNotifier(smtp, secret_lookup(settings, store)),
                    lambda: [c for t in refs for c in rota.resolve(t, datetime.now(UTC))],
                    stall=oc.watchdog.stall, clock=time.time, record=record)  # fmt: skip


def oncall_lookup(policy: LoadedPolicy | None) -> Rota | None:
    """Who is on call under ``policy`` (``ports.incidents.OnCallLookup``), for incident commanders."""
    if policy is None or policy.policy.oncall is None:
        return None
    section = policy.policy.oncall
    return Rota(lambda: section)


def _ack_incident(incidents: IncidentService) -> Callable[[Escalation, str], None]:
    """An acknowledged page acknowledges its service's open incident (time to acknowledge)."""

    def acknowledged(e: Escalation, actor: str) -> None:
        if e.service is None:
            return
        for inc in incidents.find(open_only=True, service=e.service, limit=5):
            if inc.acknowledged_at is None:
                incidents.acknowledge(inc.id, actor=actor)

    return acknowledged


def load_link_key(settings: Settings) -> bytes:
    """The HMAC key of acknowledge/resolve links (state_dir/keys/oncall-links.key, made on first use)."""
    import secrets as _secrets

    path = settings.state_dir / "keys" / "oncall-links.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with suppress(FileExistsError):  # another process starting at once was first
            write_new(path, base64.b64encode(_secrets.token_bytes(32)), 0o600)
    return base64.b64decode(path.read_bytes())


def make_oncall(
    settings: Settings,
    store: Store,
    policy: Callable[[], LoadedPolicy | None],
    *,
    incidents: IncidentService | None = None,
    notifier: Notifier | None = None,
    watchdog_notifier: Notifier | None = None,
    clock: Callable[[], float] = time.time,
    secrets: Callable[[str], str | None] | None = None,
) -> OnCallParts:
    """The rota, the escalation engine (not started) and its watchdog (when the policy names one).

    Pages go by e-mail through ``SHIPWARDEN_SMTP_URL`` and by Apprise to secrets; the watchdog
    pages through a second notifier of its own (same transports, no store, no page table)."""
    from shipwarden.adapters.notify.pager import PageNotifier, parse_smtp_url
    from shipwarden.adapters.store.oncall_repo import OnCallRepo, RotaRepo, StoreRecentChanges

    def section() -> OnCallPolicy | None:
        p = policy()
        return p.policy.oncall if p is not None else None

    rota = Rota(section, RotaRepo(store), clock)
    lookup = secrets or secret_lookup(settings, store)
    smtp = parse_smtp_url(settings.smtp_url, settings.smtp_from) if settings.smtp_url else None
    oc = section()
    expiry = oc.link_expiry if oc is not None else 86400.0

    beat_file = heartbeat_file(settings)
    beat_file.parent.mkdir(parents=True, exist_ok=True)
    engine = EscalationEngine(
        OnCallRepo(store), rota, notifier or PageNotifier(smtp, lookup), changes=StoreRecentChanges(store),
        heartbeat=beat_file.touch,
        links=LinkSigner(load_link_key(settings), settings.public_url, expiry), clock=clock,
        on_acknowledged=_ack_incident(incidents) if incidents is not None else None,
    )  # fmt: skip
    watchdog = None
    if oc is not None and oc.watchdog is not None:
        refs = [Target(r.kind, r.name) for r in oc.watchdog.notify]

        def contacts() -> list[Contact]:
            now = datetime.now(UTC)
            return [c for t in refs for c in rota.resolve(t, now)]

        def record(subject: str, detail: dict[str, object]) -> None:
            store.audit(actor="shipwarden:oncall-watchdog", action="escalation.watchdog",
                        outcome="failed", detail={"subject": subject, **detail})  # fmt: skip

        watchdog = Watchdog(lambda: engine.beat, watchdog_notifier or PageNotifier(smtp, lookup), contacts,
                            stall=oc.watchdog.stall, record=record)  # fmt: skip
    return OnCallParts(rota, engine, watchdog)
