"""Runtime settings (environment variables ``SHIPWARDEN_*``), one class for the whole process."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIPWARDEN_", extra="ignore")

    state_dir: Path = Field(Path(".shipwarden"), description="Where the database, nginx and logs live.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in state_dir.")
    policy: Path = Field(Path("shipwarden.yaml"), description="The team's policy file.")
    actor: str | None = Field(None, description="Who is acting (default: the OS user).")
    router_admin_port: int = Field(0, description="nginx admin port (0: pick a free one and remember it).")
    tick_s: float = 0.2
    prometheus_url: str | None = Field(None, description="Prometheus base URL for analysis metrics.")
    incident_related: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Services each service depends on (incident correlation): {"checkout": ["payments"]}.',
    )
    incident_reports_dir: Path | None = Field(None, description="Incident reports (state_dir/reports).")
    smtp_url: str | None = Field(None, description="SMTP server for pages: smtp://host:25, smtps://u:p@host:465.")
    smtp_from: str = Field("shipwarden@localhost", description="From address of pages by e-mail.")
    public_url: str | None = Field(
        None, description="The API's address as people reach it (acknowledge/resolve links in pages)."
    )
    newrelic_api_key: str | None = Field(None, description="New Relic user key (NRAK-…) for NRQL metrics.")
    newrelic_account_id: int | None = None
    newrelic_region: str = "US"

    # -- alerting (E7, E8) ----------------------------------------------------------------------
    alert_webhook_secret: str = Field(
        "ALERT_WEBHOOK_TOKEN",
        description="Secret whose value authenticates Alertmanager's webhook and Prometheus' alerts "
        "(bearer token, or HMAC-SHA256 of the body in X-Shipwarden-Signature); unset: refused.",
    )
    pagerduty_url: str = Field(
        "https://events.pagerduty.com/v2/enqueue", description="PagerDuty Events API v2 endpoint."
    )
    prometheus_rules_file: Path | None = Field(
        None, description="Where `alerts rules --write` puts the generated Prometheus rules."
    )
    prometheus_reload_url: str | None = Field(
        None, description="Prometheus' /-/reload (needs --web.enable-lifecycle), after rules change."
    )
    prometheus_pid_file: Path | None = Field(None, description="Else: SIGHUP the process in this file.")
    alert_external_url: str = Field("", description="Where people open shipwarden (links in notices).")

    # -- access control and data protection (E5, E6) --------------------------------------------
    keks: str | None = Field(
        None, description="KEKs as 'id:BASE64,id2:BASE64' (first = primary); overrides kek_files."
    )
    kek_files: list[Path] = Field(
        default_factory=list,
        description="KEK files (32 raw bytes or base64, mode 0600), first = primary; "
        "default: state_dir/keys/kek-1.key, created on first use.",
    )
    signing_key_file: Path | None = Field(
        None,
        description="Ed25519 PEM signing audit checkpoints and dossiers "
        "(default state_dir/keys/signing.key).",
    )
    audit_public_keys: list[Path] = Field(
        default_factory=list, description="Older public keys whose checkpoints still verify (after rotation)."
    )
    audit_checkpoint_every: int = Field(
        1000, ge=1, description="Sign the chain head every N entries (the same for every process)."
    )
    audit_head_file: Path | None = Field(
        None,
        description="Witness file: every signed audit checkpoint is appended here, outside the database "
        "(default state_dir/audit.head; keep it where the database's writers cannot write).",
    )
    api_threads: int = Field(
        8,
        ge=1,
        description="Worker threads of `serve` for blocking request work (database reads).  Few is "
        "faster: the work holds the GIL, and dozens of threads contending for it multiplied the CPU "
        "cost of a request several times on MariaDB (bench/api.py).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list, description="CIDRs of proxies whose X-Forwarded-For is believed."
    )
    role_cidrs: dict[str, list[str]] = Field(
        default_factory=dict, description='Per-role IP allowlists, e.g. {"admin": ["10.1.0.0/16"]}.'
    )
    session_idle_s: float = Field(900, description="Idle session time-out (OWASP: 15 min).")
    session_absolute_s: float = Field(8 * 3600, description="Absolute session time-out (8 h).")
    session_max_concurrent: int = Field(3, description="Live sessions per user.")
    mfa_required: bool = Field(True, description="Production-affecting actions need a fresh TOTP check.")
    mfa_window_s: float = Field(900, description="How long a TOTP check stays fresh.")
    cookie_secure: bool = Field(True, description="Mark the session cookie Secure (HTTPS only).")

    @property
    def head_file(self) -> Path:
        return self.audit_head_file or self.state_dir / "audit.head"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.state_dir / 'shipwarden.db').resolve()}"
