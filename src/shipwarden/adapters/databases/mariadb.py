"""The MariaDB driver: status, GTID replication, promotion and fencing, checksums (over PyMySQL).

One short-lived connection per operation, with connect *and* read time-outs: a frozen
server (SIGSTOP) still completes the TCP handshake in the kernel, so only the read
time-out notices it.  Semi-synchronous replication is configured to wait ``AFTER_SYNC``
(MariaDB defaults to ``AFTER_COMMIT``, where other sessions can see a commit no replica
has, and lose it on failover).

Fencing is ``read_only=1`` (MariaDB has no ``super_read_only``; an account with ``READ_ONLY
ADMIN`` — part of ``ALL PRIVILEGES``, so the administrative user's — or, before 10.11, ``SUPER``
writes through it; :meth:`MariaDBDriver.read_only_bypass` names them), then every client session
is killed so an open transaction cannot commit afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pymysql
import pymysql.cursors

from shipwarden.domain.dr.gtid import GtidPosition
from shipwarden.domain.dr.topology import Credentials, Endpoint, ReplicaStatus, ServerStatus
from shipwarden.ports.databases import BinlogFile, DatabaseError

__all__ = ["MariaDBDriver", "SYSTEM_SCHEMAS"]

SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
#: a replica gives its source up after this many seconds of silence (``slave_net_timeout``, also
#: its connect time-out) — what holistic failure detection waits for in a partition, and what
#: ``STOP SLAVE`` waits for when the IO thread is reconnecting; the source sends a heartbeat every
#: ``HEARTBEAT_PERIOD`` seconds when it has nothing else to send, so an idle link is never silent
REPLICA_NET_TIMEOUT = 1
HEARTBEAT_PERIOD = 0.25


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _lit(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class MariaDBDriver:
    engine = "mariadb"

    def __init__(
        self,
        credentials: Credentials,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 30.0,
        sockets: Mapping[Endpoint, str] | None = None,
    ):
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        #: instances reached over their Unix socket instead of TCP (a process on their host)
        self.sockets = dict(sockets or {})

    def over_sockets(self, sockets: Mapping[Endpoint, str]) -> MariaDBDriver:
        """The same driver, reaching these instances over their local Unix sockets — what a guard
        running on the instance's host uses: no network partition cuts it off."""
        return MariaDBDriver(self.credentials, connect_timeout=self.connect_timeout,
                             read_timeout=self.read_timeout, sockets=sockets)  # fmt: skip

    @contextmanager
    def _conn(self, ep: Endpoint, timeout: float | None = None) -> Iterator[Any]:
        """A connection whose handshake is bounded by the connect time-out too (a frozen server
        accepts TCP in the kernel and then says nothing), and whose queries by ``timeout``."""
        connect = timeout or self.connect_timeout
        where: dict[str, Any] = (
            {"unix_socket": self.sockets[ep]} if ep in self.sockets else {"host": ep.host, "port": ep.port}
        )
        try:
            conn = pymysql.connect(
                **where,
                user=self.credentials.user,
                password=self.credentials.password or "",
                connect_timeout=connect,
                read_timeout=connect,
                write_timeout=connect,
                autocommit=True,
                cursorclass=pymysql.cursors.DictCursor,
            )
        except pymysql.MySQLError as exc:
            raise DatabaseError(f"{ep}: cannot connect: {exc}") from exc
        conn._read_timeout = conn._write_timeout = timeout or self.read_timeout  # after the handshake
        try:
            yield conn
        except pymysql.MySQLError as exc:
            raise DatabaseError(f"{ep}: {exc}") from exc
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a dead server: nothing to close politely
                pass

    def _rows(self, ep: Endpoint, sql: str, timeout: float | None = None) -> list[dict[str, Any]]:
        with self._conn(ep, timeout) as c, c.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())

    def _exec(self, ep: Endpoint, statements: Sequence[str], timeout: float | None = None) -> None:
        with self._conn(ep, timeout) as c, c.cursor() as cur:
            for sql in statements:
                cur.execute(sql)

    # -- observation ------------------------------------------------------------------------------
    def ping(self, endpoint: Endpoint, timeout: float) -> str | None:
        try:
            self._rows(endpoint, "SELECT 1 AS ok", timeout)
            return None
        except DatabaseError as exc:
            return str(exc)

    def status(self, endpoint: Endpoint, timeout: float | None = None) -> ServerStatus:
        with self._conn(endpoint, timeout) as c, c.cursor() as cur:
            cur.execute(
                "SELECT @@server_id AS sid, @@read_only AS ro, @@gtid_binlog_pos AS bp, "
                "@@gtid_current_pos AS cp, @@gtid_slave_pos AS sp, @@version AS v"
            )
            v = cur.fetchone()
            cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('Rpl_semi_sync_master_status', "
                        "'Rpl_semi_sync_master_clients')")  # fmt: skip
            st = {r["Variable_name"]: r["Value"] for r in cur.fetchall()}
            cur.execute("SHOW MASTER STATUS")
            m = cur.fetchone()
        assert v is not None
        semi = st.get("Rpl_semi_sync_master_status")
        return ServerStatus(
            endpoint=endpoint,
            server_id=int(v["sid"]),
            read_only=bool(int(v["ro"])),
            gtid_binlog_pos=GtidPosition.parse(v["bp"]),
            gtid_current_pos=GtidPosition.parse(v["cp"]),
            gtid_slave_pos=GtidPosition.parse(v["sp"]),
            semi_sync_master=None if semi is None else semi == "ON",
            semi_sync_clients=int(st.get("Rpl_semi_sync_master_clients", 0) or 0),
            binlog_file=m["File"] if m else None,
            binlog_pos=int(m["Position"]) if m else None,
            version=str(v["v"]),
        )

    def replica_status(self, endpoint: Endpoint, timeout: float | None = None) -> ReplicaStatus | None:
        with self._conn(endpoint, timeout) as c, c.cursor() as cur:  # one connection: asked every tick
            cur.execute("SHOW SLAVE STATUS")
            r = cur.fetchone()
            if r is None:
                return None
            cur.execute("SELECT @@gtid_slave_pos AS p")
            slave_pos = cur.fetchone()["p"]
        host, port = r.get("Master_Host") or "", int(r.get("Master_Port") or 0)
        behind = r.get("Seconds_Behind_Master")
        return ReplicaStatus(
            endpoint=endpoint,
            source=Endpoint(host, port) if host and port else None,
            io_running=str(r.get("Slave_IO_Running") or "No"),
            sql_running=r.get("Slave_SQL_Running") == "Yes",
            last_io_error=str(r.get("Last_IO_Error") or ""),
            last_sql_error=str(r.get("Last_SQL_Error") or ""),
            seconds_behind=None if behind is None else int(behind),
            gtid_io_pos=GtidPosition.parse(r.get("Gtid_IO_Pos")),
            gtid_slave_pos=GtidPosition.parse(slave_pos),
        )

    def semi_sync_waits(self, endpoint: Endpoint, timeout: float | None = None) -> list[float]:
        """Seconds each session has been waiting for a replica's semi-sync acknowledgement."""
        rows = self._rows(
            endpoint,
            "SELECT TIME_MS AS ms FROM information_schema.PROCESSLIST "
            "WHERE STATE LIKE 'Waiting for semi-sync ACK%'",
            timeout,
        )
        return [float(r["ms"]) / 1000.0 for r in rows]

    def binlogs(self, endpoint: Endpoint) -> list[BinlogFile]:
        return [
            BinlogFile(r["Log_name"], int(r["File_size"])) for r in self._rows(endpoint, "SHOW BINARY LOGS")
        ]

    def binlog_start(self, endpoint: Endpoint, file: str) -> GtidPosition:
        rows = self._rows(endpoint, f"SELECT BINLOG_GTID_POS({_lit(file)}, 4) AS p")
        return GtidPosition.parse(rows[0]["p"] if rows else "")

    def wait_applied(self, endpoint: Endpoint, position: GtidPosition, timeout: float) -> bool:
        if not position:
            return True
        rows = self._rows(
            endpoint, f"SELECT MASTER_GTID_WAIT({_lit(str(position))}, {float(timeout)}) AS r", timeout + 5
        )
        return bool(rows) and int(rows[0]["r"]) == 0

    # -- changes ----------------------------------------------------------------------------------
    def configure_primary(self, endpoint: Endpoint, *, semi_sync: bool, semi_sync_timeout: float) -> None:
        self._exec(
            endpoint,
            [
                f"SET GLOBAL rpl_semi_sync_master_enabled = {'ON' if semi_sync else 'OFF'}",
                "SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC'",
                "SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON",
                f"SET GLOBAL rpl_semi_sync_master_timeout = {int(semi_sync_timeout * 1000)}",
            ],
        )

    def promote(
        self,
        endpoint: Endpoint,
        *,
        semi_sync: bool,
        semi_sync_timeout: float,
        writable: bool = True,
        apply: GtidPosition | None = None,
        apply_timeout: float = 30.0,
    ) -> None:
        ms = int(semi_sync_timeout * 1000)
        statements = [
            "STOP SLAVE",
            "RESET SLAVE ALL",
            f"SET GLOBAL rpl_semi_sync_master_enabled = {'ON' if semi_sync else 'OFF'}",
            "SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC'",
            # with no replica connected a commit still waits (then the guard fences), never skips
            "SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON",
            f"SET GLOBAL rpl_semi_sync_master_timeout = {ms}",
            *(["SET GLOBAL read_only = 0"] if writable else []),
        ]
        # one connection for the whole promotion: under load every new connection costs
        with self._conn(endpoint, (apply_timeout + 5) if apply is not None else None) as c, c.cursor() as cur:
            if apply is not None:
                cur.execute("STOP SLAVE IO_THREAD")
                cur.execute(f"SELECT MASTER_GTID_WAIT({_lit(str(apply))}, {float(apply_timeout)}) AS r")
                row = cur.fetchone()
                if row is None or int(row["r"]) != 0:
                    raise DatabaseError(f"{endpoint} did not apply {apply} within {apply_timeout:g}s")
            for sql in statements:
                cur.execute(sql)

    def set_writable(self, endpoint: Endpoint) -> None:
        self._exec(endpoint, ["SET GLOBAL read_only = 0"])

    def stop_receiving(self, endpoint: Endpoint) -> None:
        self._exec(endpoint, ["STOP SLAVE IO_THREAD"])

    def _kill_clients(self, endpoint: Endpoint, spare: set[int], timeout: float | None) -> int:
        with self._conn(endpoint, timeout) as c, c.cursor() as cur:
            cur.execute(
                "SELECT ID, USER, COMMAND FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()"
            )
            killed = 0
            for row in cur.fetchall():
                if int(row["ID"]) in spare:
                    continue
                if row["USER"] in ("system user", "event_scheduler") or str(row["COMMAND"]).startswith(
                    ("Binlog Dump", "Daemon", "Slave_")
                ):
                    continue
                try:
                    cur.execute(f"KILL CONNECTION {int(row['ID'])}")
                    killed += 1
                except pymysql.MySQLError:
                    pass  # it ended by itself meanwhile
            return killed

    def fence(self, endpoint: Endpoint, timeout: float | None = None) -> int:
        """Sessions first: ``SET GLOBAL read_only = 1`` waits for every commit in progress, and an
        isolated semi-sync primary holds its commits waiting for a replica's acknowledgement (up to
        ``rpl_semi_sync_master_timeout``).  Killing a session ends its wait without an OK to the
        client (the transaction stays in the binlog: the rebuild discards it).  Sessions keep being
        killed while ``read_only`` is being set, so a client that reconnects meanwhile cannot hold
        it up either."""
        spare: set[int] = set()
        killed = self._kill_clients(endpoint, spare, timeout)
        done, started = threading.Event(), threading.Event()
        failed: list[DatabaseError] = []

        def set_read_only() -> None:
            try:
                with self._conn(endpoint, timeout) as c, c.cursor() as cur:
                    cur.execute("SELECT CONNECTION_ID() AS id")
                    spare.add(int(cur.fetchone()["id"]))
                    started.set()
                    cur.execute("SET GLOBAL read_only = 1")
            except DatabaseError as exc:
                failed.append(exc)
            finally:
                started.set()
                done.set()

        threading.Thread(target=set_read_only, daemon=True).start()
        started.wait()
        while not done.wait(0.05):
            killed += self._kill_clients(endpoint, spare, timeout)
        if failed:
            raise failed[0]
        return killed + self._kill_clients(endpoint, spare, timeout)

    def ensure_account(self, endpoint: Endpoint, credentials: Credentials, schema: str) -> None:
        user, pw = _lit(credentials.user), _lit(credentials.password or "")
        self._exec(
            endpoint,
            [
                f"CREATE USER IF NOT EXISTS {user}@'%' IDENTIFIED BY {pw}",
                f"ALTER USER {user}@'%' IDENTIFIED BY {pw}",
                f"GRANT SELECT, INSERT, CREATE ON {_q(schema)}.* TO {user}@'%'",
            ],
        )

    def read_only_bypass(self, endpoint: Endpoint, user: str) -> list[str]:
        # MariaDB 10.11: READ_ONLY ADMIN (in ALL PRIVILEGES; no longer in SUPER) writes through
        # read_only; before 10.11 SUPER did — both are reported
        rows = self._rows(
            endpoint,
            "SELECT GRANTEE AS g, PRIVILEGE_TYPE AS p FROM information_schema.USER_PRIVILEGES "
            "WHERE PRIVILEGE_TYPE IN ('SUPER', 'READ_ONLY ADMIN')",
        )
        prefix = "'" + user.replace("'", "''") + "'@"
        return sorted({str(r["p"]) for r in rows if str(r["g"]).startswith(prefix)})

    def replicate_from(
        self,
        endpoint: Endpoint,
        source: Endpoint,
        credentials: Credentials,
        *,
        semi_sync: bool,
        start_at: GtidPosition | None = None,
    ) -> None:
        statements = ["SET GLOBAL read_only = 1", "STOP SLAVE",
                      f"SET GLOBAL slave_net_timeout = {REPLICA_NET_TIMEOUT}"]  # fmt: skip
        if start_at is not None:
            statements.append(f"SET GLOBAL gtid_slave_pos = {_lit(str(start_at))}")
        statements += [
            f"CHANGE MASTER TO MASTER_HOST = {_lit(source.host)}, MASTER_PORT = {int(source.port)}, "
            f"MASTER_USER = {_lit(credentials.user)}, MASTER_PASSWORD = {_lit(credentials.password or '')}, "
            "MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1, "
            f"MASTER_HEARTBEAT_PERIOD = {HEARTBEAT_PERIOD:g}",
            f"SET GLOBAL rpl_semi_sync_slave_enabled = {'ON' if semi_sync else 'OFF'}",
            # a replica acting as a semi-sync primary would wait for acks from nobody at each applied commit
            "SET GLOBAL rpl_semi_sync_master_enabled = OFF",
            "START SLAVE",
        ]
        self._exec(endpoint, statements)

    # -- checksums --------------------------------------------------------------------------------
    def _tables(self, cur: Any, schemas: Sequence[str]) -> list[str]:
        if schemas:
            where = "TABLE_SCHEMA IN (" + ",".join(_lit(s) for s in schemas) + ")"
        else:
            where = "TABLE_SCHEMA NOT IN (" + ",".join(_lit(s) for s in SYSTEM_SCHEMAS) + ")"
        cur.execute(
            "SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t FROM information_schema.TABLES "
            f"WHERE TABLE_TYPE = 'BASE TABLE' AND {where} ORDER BY 1, 2"
        )
        return [f"{r['s']}.{r['t']}" for r in cur.fetchall()]

    def _checksum(self, cur: Any, tables: Sequence[str]) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for i in range(0, len(tables), 50):
            chunk = tables[i : i + 50]
            names = ", ".join(".".join(_q(p) for p in t.split(".", 1)) for t in chunk)
            cur.execute(f"CHECKSUM TABLE {names} EXTENDED")
            for row in cur.fetchall():
                out[str(row["Table"])] = None if row["Checksum"] is None else int(row["Checksum"])
        return out

    def checksums(self, endpoint: Endpoint, schemas: Sequence[str]) -> dict[str, int | None]:
        with self._conn(endpoint) as c, c.cursor() as cur:
            return self._checksum(cur, self._tables(cur, schemas))

    def consistent_checksums(
        self, endpoint: Endpoint, schemas: Sequence[str]
    ) -> tuple[GtidPosition, dict[str, int | None]]:
        with self._conn(endpoint) as c, c.cursor() as cur:
            cur.execute("SHOW SLAVE STATUS")
            replica = cur.fetchone() is not None
            if replica:
                cur.execute("STOP SLAVE SQL_THREAD")
                query = "SELECT @@gtid_slave_pos AS p"
            else:
                cur.execute("FLUSH TABLES WITH READ LOCK")
                query = "SELECT @@gtid_binlog_pos AS p"
            try:
                tables = self._tables(cur, schemas)
                cur.execute(query)
                row = cur.fetchone()
                sums = self._checksum(cur, tables)
            finally:
                cur.execute("START SLAVE SQL_THREAD" if replica else "UNLOCK TABLES")
            return GtidPosition.parse(row["p"] if row else ""), sums
