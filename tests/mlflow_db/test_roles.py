"""mlflow-db's ensure step (mlflow-db/ensure-roles.sh) against real PostgreSQL clusters.

MLflow logs in as a role that owns its two databases and nothing more; the step creates it on
a fresh cluster, takes over the tables an earlier version created as the superuser, rotates
its password, changes nothing when run again, and refuses to make MLflow a superuser.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from devstack import PostgresServer, postgres_server

pytestmark = pytest.mark.integration


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    """A fresh cluster after the ensure step, as mlflow-db is after its first start."""
    with postgres_server() as server:
        yield server


@contextlib.contextmanager
def connect(
    pg: PostgresServer, database: str, user: str | None = None, password: str | None = None
) -> Iterator[Any]:
    """A psycopg2 connection over TCP (password login), as the role unless told otherwise."""
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=pg.port,
        dbname=database,
        user=user or pg.user,
        password=password or pg.password,
        connect_timeout=10,
    )
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


def query(
    pg: PostgresServer, sql: str, params: tuple[Any, ...] = (), database: str = "postgres"
) -> list[tuple[Any, ...]]:
    """Rows of one statement run as the superuser."""
    with (
        connect(pg, database, pg.superuser, pg.superuser_password) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


def not_owned_by_role(pg: PostgresServer, database: str) -> list[tuple[str, str, str]]:
    """Relations (tables, indexes, sequences, views), types, routines and the schema ``public``
    of a database that the role does not own (all of them when it does not exist yet): name, kind
    and owner."""
    rows = query(
        pg,
        """
        WITH role AS (SELECT oid FROM pg_roles WHERE rolname = %s)
        SELECT c.relname::text, c.relkind::text, pg_get_userbyid(c.relowner)::text
        FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace
          AND c.relowner IS DISTINCT FROM (SELECT oid FROM role)
        UNION ALL
        SELECT t.typname::text, 'type', pg_get_userbyid(t.typowner)::text
        FROM pg_type t
        WHERE t.typnamespace = 'public'::regnamespace
          AND t.typowner IS DISTINCT FROM (SELECT oid FROM role)
        UNION ALL
        SELECT p.proname::text, 'routine', pg_get_userbyid(p.proowner)::text
        FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
          AND p.proowner IS DISTINCT FROM (SELECT oid FROM role)
        UNION ALL
        SELECT nspname::text, 'schema', pg_get_userbyid(nspowner)::text
        FROM pg_namespace
        WHERE nspname = 'public' AND nspowner IS DISTINCT FROM (SELECT oid FROM role)
        """,
        (pg.user,),
        database=database,
    )
    return [(name, kind, owner) for name, kind, owner in rows]


def state(pg: PostgresServer) -> dict[str, Any]:
    """What the ensure step decides: the role's attributes, the databases' owners and
    privileges, and the owner and privileges of everything in their public schemas."""
    snapshot: dict[str, Any] = {
        "roles": query(
            pg,
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolreplication,"
            " rolbypassrls, rolinherit, rolconnlimit, rolvaliduntil FROM pg_roles ORDER BY 1",
        ),
        "databases": query(
            pg,
            "SELECT datname, pg_get_userbyid(datdba), datacl::text FROM pg_database ORDER BY 1",
        ),
    }
    for database in (pg.database, pg.auth_database):
        snapshot[database] = query(
            pg,
            "SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relacl::text"
            " FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
            " UNION ALL SELECT nspname, 'schema', pg_get_userbyid(nspowner), nspacl::text"
            " FROM pg_namespace WHERE nspname = 'public' ORDER BY 1, 2",
            database=database,
        )
    return snapshot


def mlflow_db_upgrade(url: str) -> subprocess.CompletedProcess[str]:
    """``mlflow db upgrade URL`` from this venv, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mlflow", "db", "upgrade", url],
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def migrations_dir() -> Path:
    """MLflow's Alembic migrations of the installed mlflow package."""
    import mlflow

    return Path(mlflow.__file__).parent / "store" / "db_migrations"


def create_mlflow_schema(url: str, migrations_behind: int) -> str:
    """Creates MLflow's schema as an earlier version of the stack left it: ``mlflow db upgrade``
    as the given login, or, to leave migrations for later, what it does on an empty database
    (MLflow's initial tables, then its Alembic migrations) stopped ``migrations_behind``
    revisions before the head.

    Returns:
        The head revision.
    """
    import sqlalchemy
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    config = Config(str(migrations_dir() / "alembic.ini"))
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    assert head is not None
    if migrations_behind == 0:
        upgrade = mlflow_db_upgrade(url)
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        return head

    engine = sqlalchemy.create_engine(url)
    try:
        InitialBase.metadata.create_all(engine)
    finally:
        engine.dispose()
    revision: str = head
    for _ in range(migrations_behind):
        down = script.get_revision(revision).down_revision
        assert isinstance(down, str), f"{revision} is a merge; pick another starting point"
        revision = down
    command.upgrade(config, revision)
    return head


def test_fresh_cluster_role_owns_both_databases_and_nothing_more(pg: PostgresServer) -> None:
    [role] = query(
        pg,
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin"
        " FROM pg_roles WHERE rolname = %s",
        (pg.user,),
    )
    assert role == (False, False, False, False, False, True)
    owners = dict(
        query(
            pg,
            "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname IN (%s, %s)",
            (pg.database, pg.auth_database),
        )
    )
    assert owners == {pg.database: pg.user, pg.auth_database: pg.user}
    assert not_owned_by_role(pg, pg.database) == []
    assert not_owned_by_role(pg, pg.auth_database) == []

    for database in (pg.database, pg.auth_database):
        with connect(pg, database) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE probe (id serial PRIMARY KEY, note text)")
            cur.execute("INSERT INTO probe (note) VALUES ('written by the role') RETURNING id")
            assert cur.fetchone() == (1,)
    with (
        connect(pg, pg.database) as conn,
        conn.cursor() as cur,
        pytest.raises(psycopg2.errors.InsufficientPrivilege),
    ):
        cur.execute("CREATE DATABASE not_allowed")


def test_public_cannot_connect_to_the_databases(pg: PostgresServer) -> None:
    query(pg, "CREATE ROLE outsider LOGIN PASSWORD 'outsider-pw'")
    # The login itself works (the maintenance database keeps PostgreSQL's defaults) ...
    with connect(pg, "postgres", "outsider", "outsider-pw") as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone() == ("outsider",)
    # ... but MLflow's databases let in only their owner (and superusers).
    for database in (pg.database, pg.auth_database):
        with (
            pytest.raises(psycopg2.OperationalError, match="permission denied for database"),
            connect(pg, database, "outsider", "outsider-pw"),
        ):
            pass


@pytest.mark.parametrize(
    "migrations_behind", [0, 3], ids=["schema-at-head", "schema-3-migrations-behind"]
)
def test_migration_hands_the_superusers_tables_to_the_role(migrations_behind: int) -> None:
    # A volume of an earlier version: the superuser was called mlflow and MLflow ran as it.
    # Behind: migrations are left for the role to run, and they alter the superuser's tables.
    with postgres_server(superuser="mlflow", ensure=False) as pg:
        query(pg, f'CREATE DATABASE "{pg.database}"')
        head = create_mlflow_schema(pg.url(superuser=True), migrations_behind)
        [(experiment_id,)] = query(
            pg,
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time,"
            " last_update_time) VALUES ('before-migration', '/artifacts/1', 'active', 0, 0)"
            " RETURNING experiment_id",
            database=pg.database,
        )
        before = not_owned_by_role(pg, pg.database)
        assert {owner for _, kind, owner in before if kind != "schema"} == {"mlflow"}
        assert len([kind for _, kind, _ in before if kind == "r"]) > 20  # MLflow's tables

        result = pg.ensure()
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ALTER TABLE public.experiments OWNER TO mlflow_app" in result.stderr

        assert not_owned_by_role(pg, pg.database) == []
        assert not_owned_by_role(pg, pg.auth_database) == []
        with connect(pg, pg.database) as conn, conn.cursor() as cur:
            cur.execute("SELECT name FROM experiments WHERE experiment_id = %s", (experiment_id,))
            assert cur.fetchone() == ("before-migration",)

        # MLflow's own migrations now run as the role.
        upgrade = mlflow_db_upgrade(pg.url())
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        with connect(pg, pg.database) as conn, conn.cursor() as cur:
            cur.execute("SELECT version_num FROM alembic_version")
            assert cur.fetchone() == (head,)
            # ... and it keeps using the sequences of the old tables.
            cur.execute(
                "INSERT INTO experiments (name, artifact_location, lifecycle_stage,"
                " creation_time, last_update_time)"
                " VALUES ('after-migration', '/artifacts/2', 'active', 0, 0)"
                " RETURNING experiment_id"
            )
            [(new_id,)] = cur.fetchall()
            assert new_id > experiment_id
        assert not_owned_by_role(pg, pg.database) == []


def test_every_kind_of_object_is_handed_over_but_an_extensions(pg: PostgresServer) -> None:
    # What a migration (or an operator) may have created as the superuser, in the auth
    # database this time; and an extension, whose members belong to it and stay as they are.
    query(
        pg,
        """
        CREATE EXTENSION citext;
        CREATE TYPE status AS ENUM ('on', 'off');
        CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
        CREATE TYPE pair AS (a integer, b text);
        CREATE SEQUENCE standalone;
        CREATE TABLE items (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                            serial_no serial, state status, qty positive, name citext);
        CREATE TABLE parted (id integer) PARTITION BY RANGE (id);
        CREATE VIEW item_names AS SELECT name FROM items;
        CREATE MATERIALIZED VIEW item_count AS SELECT count(*) FROM items;
        CREATE FUNCTION twice(integer) RETURNS integer LANGUAGE sql AS 'SELECT 2 * $1';
        CREATE PROCEDURE noop() LANGUAGE sql AS 'SELECT 1';
        CREATE AGGREGATE total(integer) (SFUNC = int4pl, STYPE = integer);
        """,
        database=pg.auth_database,
    )
    extension_members = {  # its types and functions
        name
        for (name,) in query(
            pg,
            "SELECT coalesce(t.typname, p.proname)::text FROM pg_depend d"
            " LEFT JOIN pg_type t ON d.classid = 'pg_type'::regclass AND t.oid = d.objid"
            " LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid"
            " WHERE d.deptype = 'e' AND d.classid IN ('pg_type'::regclass, 'pg_proc'::regclass)"
            " AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'citext')",
            database=pg.auth_database,
        )
    }
    assert "citext" in extension_members

    result = pg.ensure()

    assert result.returncode == 0, result.stdout + result.stderr
    # Left with the superuser: the extension's members (and citext's array type) only.
    left = not_owned_by_role(pg, pg.auth_database)
    assert {name for name, _, _ in left} == extension_members | {"_citext"}
    assert {owner for _, _, owner in left} == {pg.superuser}
    with connect(pg, pg.auth_database) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO items (state, qty, name) VALUES ('on', 1, 'A') RETURNING id")
        assert cur.fetchone() == (1,)
        cur.execute("REFRESH MATERIALIZED VIEW item_count")
        cur.execute("SELECT nextval('standalone'), twice(2), total(qty) FROM items")
        assert cur.fetchone() == (1, 4, 1)


def test_a_second_run_changes_nothing(pg: PostgresServer) -> None:
    # Something for the first run to take over: a table the superuser made afterwards.
    query(pg, "CREATE TABLE by_superuser (id serial PRIMARY KEY)", database=pg.database)
    first = pg.ensure()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "ALTER TABLE public.by_superuser OWNER TO mlflow_app" in first.stderr
    with connect(pg, pg.database) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO by_superuser DEFAULT VALUES")
    before = state(pg)

    second = pg.ensure()

    assert second.returncode == 0, second.stdout + second.stderr
    assert "NOTICE" not in second.stderr, second.stderr
    assert "creating database" not in second.stdout
    assert state(pg) == before
    with connect(pg, pg.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM by_superuser")
        assert cur.fetchone() == (1,)


def test_a_new_password_replaces_the_old_one(pg: PostgresServer) -> None:
    old_password, new_password = pg.password, "rotated-" + pg.password[::-1]

    result = pg.ensure(MLFLOW_DB_PASSWORD=new_password)

    assert result.returncode == 0, result.stdout + result.stderr
    with connect(pg, pg.database, password=new_password) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone() == (pg.user,)
    with (
        pytest.raises(psycopg2.OperationalError, match="password authentication failed"),
        connect(pg, pg.database, password=old_password),
    ):
        pass


def test_a_password_file_is_read_like_the_container_does(
    pg: PostgresServer, tmp_path: Path
) -> None:
    secret = tmp_path / "mlflow-db-password"
    secret.write_text("from-a-file\n")  # the trailing newline is not part of it

    result = pg.ensure(MLFLOW_DB_PASSWORD="", MLFLOW_DB_PASSWORD_FILE=str(secret))

    assert result.returncode == 0, result.stdout + result.stderr
    with connect(pg, pg.database, password="from-a-file") as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    both = pg.ensure(MLFLOW_DB_PASSWORD_FILE=str(secret))
    assert both.returncode != 0
    assert "both MLFLOW_DB_PASSWORD and MLFLOW_DB_PASSWORD_FILE are set" in both.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"MLFLOW_DB_USER": "postgres"}, 'MLFLOW_DB_USER and POSTGRES_USER are both "postgres"'),
        ({"MLFLOW_AUTH_DB": "mlflow"}, 'POSTGRES_DB and MLFLOW_AUTH_DB are both "mlflow"'),
        ({"POSTGRES_DB": "postgres"}, '"postgres" is a system database'),
        ({"MLFLOW_DB_PASSWORD": ""}, "MLFLOW_DB_PASSWORD (or MLFLOW_DB_PASSWORD_FILE) is not set"),
    ],
    ids=["role-is-the-superuser", "one-database-for-both", "system-database", "no-password"],
)
def test_refuses_settings_that_break_least_privilege(
    pg: PostgresServer, overrides: dict[str, str], message: str
) -> None:
    before = state(pg)

    result = pg.ensure(**overrides)

    assert result.returncode == 1
    assert f"mlflow-db ensure: refused: {message}" in result.stderr
    assert state(pg) == before
    [(superuser,)] = query(pg, "SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'")
    assert superuser is True


def test_refuses_the_superuser_the_cluster_was_created_with(pg: PostgresServer) -> None:
    # Another superuser runs the step, and the role asked for is the bootstrap superuser: it
    # can never be made an ordinary role, so the SQL refuses (not only the shell's check).
    query(pg, "CREATE ROLE admin2 SUPERUSER LOGIN")
    before = state(pg)

    result = pg.ensure(POSTGRES_USER="admin2", MLFLOW_DB_USER=pg.superuser)

    assert result.returncode == 3
    assert 'MLFLOW_DB_USER "postgres" is the superuser this cluster was created with' in (
        result.stderr
    )
    assert state(pg) == before


def test_a_superuser_the_volume_does_not_know_is_explained(pg: PostgresServer) -> None:
    result = pg.ensure(POSTGRES_USER="mlflow")  # e.g. a volume made with POSTGRES_USER=postgres

    assert result.returncode == 1
    assert 'role "mlflow" does not exist' in result.stderr
    assert "A volume keeps the superuser it was created with" in result.stderr
