"""The prediction log's database on mlflow-db, made by the ensure step (mlflow-db/ensure-roles.sh
and monitoring.sql) on real PostgreSQL clusters.

The API's role writes and reads the log and deletes old rows, and can do nothing else; the
retraining role only reads; neither reaches MLflow's databases. The tables are those of
``wine_mlops.monitoring_db``, which the services connect through. The step creates it all on
an existing volume too, changes nothing when run again, and rotates the passwords.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from devstack import PostgresServer, postgres_server
from tests.mlflow_db.test_roles import connect as connect_psycopg2
from tests.mlflow_db.test_roles import query
from wine_mlops.features import FEATURE_NAMES
from wine_mlops.monitoring_db import connect, feedback, labelled_rows, metadata, predictions

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    """A fresh cluster after the ensure step, as mlflow-db is after its first start."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def _shared_cluster() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def shared_pg(_shared_cluster: PostgresServer) -> PostgresServer:
    """One cluster for the tests that change neither roles nor privileges: its prediction log
    is emptied before each."""
    query(
        _shared_cluster,
        "TRUNCATE predictions CASCADE",
        database=_shared_cluster.monitoring_database,
    )
    return _shared_cluster


@contextlib.contextmanager
def engine_of(pg: PostgresServer, tmp_path: Path, *, reader: bool = False) -> Iterator[Engine]:
    """An engine as a service opens it: a URL without password, and a secret file."""
    name = "monitoring-reader-password" if reader else "monitoring-db-password"
    secret = pg.write_password_file(tmp_path / name, reader=reader)
    engine = connect(pg.monitoring_url(reader=reader, with_password=False), password_file=secret)
    try:
        yield engine
    finally:
        engine.dispose()


def wine(seed: float) -> list[float]:
    return [round(seed + i / 10, 3) for i in range(len(FEATURE_NAMES))]


def prediction(features: list[float], minute: int = 0, class_id: int = 0) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "created_at": T0 + timedelta(minutes=minute),
        "model_name": "wine-classifier",
        "model_version": "2",
        "features": features,
        "class_id": class_id,
        "probabilities": [0.7, 0.2, 0.1],
    }


def monitoring_state(pg: PostgresServer) -> dict[str, Any]:
    """What the step decides for the prediction log: roles, memberships, the database's owner
    and privileges, and owner and privileges of the schema and everything in it."""
    return {
        "roles": query(
            pg,
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolreplication,"
            " rolbypassrls, rolinherit, rolconnlimit, rolvaliduntil FROM pg_roles"
            " WHERE rolname IN (%s, %s) ORDER BY 1",
            (pg.monitoring_user, pg.reader_user),
        ),
        "memberships": query(pg, "SELECT roleid, member FROM pg_auth_members ORDER BY 1, 2"),
        "databases": query(
            pg,
            "SELECT datname, pg_get_userbyid(datdba), datacl::text FROM pg_database ORDER BY 1",
        ),
        "objects": query(
            pg,
            "SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relacl::text"
            " FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
            " UNION ALL SELECT nspname, 'schema', pg_get_userbyid(nspowner), nspacl::text"
            " FROM pg_namespace WHERE nspname = 'public' ORDER BY 1, 2",
            database=pg.monitoring_database,
        ),
    }


def refused(engine: Engine, sql: str) -> str:
    """Runs one statement that must be refused for lack of privilege; returns the message."""
    with pytest.raises(sa.exc.DBAPIError) as caught, engine.begin() as conn:
        conn.exec_driver_sql(sql)
    assert isinstance(caught.value.orig, psycopg2.errors.InsufficientPrivilege), caught.value
    return str(caught.value.orig)


def test_fresh_cluster_roles_can_log_in_and_own_nothing(pg: PostgresServer) -> None:
    roles = query(
        pg,
        "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls,"
        " rolcanlogin FROM pg_roles WHERE rolname IN (%s, %s) ORDER BY 1",
        (pg.monitoring_user, pg.reader_user),
    )
    assert roles == [
        ("monitoring_app", False, False, False, False, False, True),
        ("monitoring_reader", False, False, False, False, False, True),
    ]
    # Owners of anything in any database (pg_shdepend records every owner but the bootstrap
    # superuser), and memberships: none.
    assert query(
        pg,
        "SELECT count(*) FROM pg_shdepend WHERE deptype = 'o' AND refobjid IN"
        " (SELECT oid FROM pg_roles WHERE rolname IN (%s, %s))",
        (pg.monitoring_user, pg.reader_user),
    ) == [(0,)]
    assert query(
        pg,
        "SELECT count(*) FROM pg_auth_members"
        " WHERE member IN (SELECT oid FROM pg_roles WHERE rolname IN (%s, %s))",
        (pg.monitoring_user, pg.reader_user),
    ) == [(0,)]
    [(owner,)] = query(
        pg,
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
        (pg.monitoring_database,),
    )
    assert owner == pg.superuser
    owners = query(
        pg,
        "SELECT relname, pg_get_userbyid(relowner) FROM pg_class"
        " WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1",
        database=pg.monitoring_database,
    )
    assert owners == [("feedback", pg.superuser), ("predictions", pg.superuser)]


def test_public_and_mlflows_role_cannot_connect_to_the_prediction_log(pg: PostgresServer) -> None:
    query(pg, "CREATE ROLE outsider LOGIN PASSWORD 'outsider-pw'")
    for user, password in (("outsider", "outsider-pw"), (pg.user, pg.password)):
        with (
            pytest.raises(psycopg2.OperationalError, match="permission denied for database"),
            connect_psycopg2(pg, pg.monitoring_database, user, password),
        ):
            pass


def test_the_tables_are_those_of_the_sqlalchemy_mirror(shared_pg: PostgresServer) -> None:
    pg = shared_pg
    engine = sa.create_engine(pg.url(pg.monitoring_database, superuser=True))
    try:
        inspector = sa.inspect(engine)
        dialect = postgresql.dialect()
        for table in metadata.sorted_tables:
            columns = {
                column["name"]: (column["type"].compile(dialect), column["nullable"])
                for column in inspector.get_columns(table.name)
            }
            assert columns == {
                column.name: (column.type.compile(dialect), column.nullable)
                for column in table.columns
            }, table.name
            primary_key = inspector.get_pk_constraint(table.name)
            assert primary_key["name"] == table.primary_key.name
            assert primary_key["constrained_columns"] == [c.name for c in table.primary_key]
            indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(table.name)}
            assert indexes == {i.name: [c.name for c in i.columns] for i in table.indexes}
        [foreign_key] = inspector.get_foreign_keys("feedback")
        assert foreign_key["name"] == "feedback_prediction_id_fkey"
        assert foreign_key["referred_table"] == "predictions"
        assert foreign_key["options"].get("ondelete") == "CASCADE"
        checks = {check["name"] for check in inspector.get_check_constraints("feedback")}
        assert checks == {"feedback_true_class_id_check"}
    finally:
        engine.dispose()


def test_the_api_role_logs_labels_and_deletes_predictions(
    shared_pg: PostgresServer, tmp_path: Path
) -> None:
    pg = shared_pg
    first, second = prediction(wine(1.0), minute=0), prediction(wine(2.0), minute=1)
    with engine_of(pg, tmp_path) as engine:
        with engine.begin() as conn:
            conn.execute(predictions.insert(), [first, second])
            conn.execute(
                feedback.insert().values(prediction_id=first["id"], true_class_id=1, received_at=T0)
            )
            # Received now: the database's clock.
            conn.execute(feedback.insert().values(prediction_id=second["id"], true_class_id=2))
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    predictions.c.id, predictions.c.features, predictions.c.probabilities
                ).order_by(predictions.c.created_at)
            ).all()
            assert [tuple(row) for row in rows] == [
                (first["id"], wine(1.0), [0.7, 0.2, 0.1]),
                (second["id"], wine(2.0), [0.7, 0.2, 0.1]),
            ]
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar_one() == "5s"
        # The API's own reading (live accuracy) works too; newest feedback first.
        assert labelled_rows(engine) == [(wine(2.0), 2), (wine(1.0), 1)]

        # Retention: deleting the older prediction takes its feedback along.
        with engine.begin() as conn:
            deleted = conn.execute(
                predictions.delete().where(predictions.c.created_at < T0 + timedelta(seconds=30))
            )
            assert deleted.rowcount == 1
        with engine.connect() as conn:
            remaining = conn.execute(sa.select(feedback.c.prediction_id)).scalars().all()
        assert remaining == [second["id"]]

        # Feedback for a prediction that is not (or no longer) logged is rejected, and so is
        # a class that does not exist.
        other = prediction(wine(3.0))
        with engine.begin() as conn:
            conn.execute(predictions.insert().values(**other))
        with (
            pytest.raises(sa.exc.IntegrityError, match="feedback_prediction_id_fkey"),
            engine.begin() as conn,
        ):
            conn.execute(feedback.insert().values(prediction_id=first["id"], true_class_id=0))
        with (
            pytest.raises(sa.exc.IntegrityError, match="feedback_true_class_id_check"),
            engine.begin() as conn,
        ):
            conn.execute(feedback.insert().values(prediction_id=other["id"], true_class_id=3))


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE predictions SET class_id = 2",
        "UPDATE feedback SET true_class_id = 2",
        "DELETE FROM feedback",
        "TRUNCATE predictions",
        "TRUNCATE feedback",
        "DROP TABLE feedback",
        "ALTER TABLE predictions ADD COLUMN note text",
        "CREATE TABLE public.probe (id int)",
        "CREATE SCHEMA probe",
        "CREATE TEMPORARY TABLE probe (id int)",
        "SELECT id FROM predictions FOR UPDATE",
    ],
)
def test_the_api_role_can_do_nothing_else(
    shared_pg: PostgresServer, tmp_path: Path, sql: str
) -> None:
    pg = shared_pg
    with engine_of(pg, tmp_path) as engine:
        with engine.begin() as conn:
            conn.execute(predictions.insert().values(**(row := prediction(wine(1.0)))))
            conn.execute(feedback.insert().values(prediction_id=row["id"], true_class_id=0))

        refused(engine, sql)

        assert labelled_rows(engine) == [(wine(1.0), 0)]
        with engine.connect() as conn:
            assert conn.execute(sa.select(predictions.c.class_id)).scalars().all() == [0]


@pytest.mark.parametrize("reader", [False, True], ids=["api-role", "reader-role"])
def test_neither_role_reaches_mlflows_databases(shared_pg: PostgresServer, reader: bool) -> None:
    pg = shared_pg
    user, password = (
        (pg.reader_user, pg.reader_password)
        if reader
        else (pg.monitoring_user, pg.monitoring_password)
    )
    for database in (pg.database, pg.auth_database):
        with (
            pytest.raises(psycopg2.OperationalError, match="permission denied for database"),
            connect_psycopg2(pg, database, user, password),
        ):
            pass


def test_the_reader_role_only_reads(shared_pg: PostgresServer, tmp_path: Path) -> None:
    pg = shared_pg
    rows = [prediction(wine(float(i)), minute=i, class_id=i % 3) for i in range(3)]
    with engine_of(pg, tmp_path) as app, app.begin() as conn:
        conn.execute(predictions.insert(), rows)
        conn.execute(
            feedback.insert(),
            [
                {
                    "prediction_id": row["id"],
                    "true_class_id": (i + 1) % 3,
                    "received_at": T0 + timedelta(hours=i),
                }
                for i, row in enumerate(rows[:2])
            ],
        )

    with engine_of(pg, tmp_path, reader=True) as reader:
        assert labelled_rows(reader) == [(wine(1.0), 2), (wine(0.0), 1)]
        assert labelled_rows(reader, limit=1) == [(wine(1.0), 2)]
        with reader.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(predictions)).scalar() == 3
        other = prediction(wine(9.0))
        for statement in (
            predictions.insert().values(**other),
            feedback.insert().values(prediction_id=rows[2]["id"], true_class_id=0),
            predictions.delete(),
            feedback.delete(),
            predictions.update().values(class_id=1),
        ):
            with (
                pytest.raises(sa.exc.ProgrammingError, match="permission denied"),
                reader.begin() as conn,
            ):
                conn.execute(statement)
        for sql in ("TRUNCATE feedback", "CREATE TABLE public.probe (id int)"):
            refused(reader, sql)
        assert len(labelled_rows(reader)) == 2


def test_a_second_run_changes_nothing_and_rotates_the_passwords(
    pg: PostgresServer, tmp_path: Path
) -> None:
    row = prediction(wine(5.0))
    with engine_of(pg, tmp_path) as engine, engine.begin() as conn:
        conn.execute(predictions.insert().values(**row))
        conn.execute(feedback.insert().values(prediction_id=row["id"], true_class_id=1))
    before = monitoring_state(pg)
    old_app, old_reader = pg.monitoring_password, pg.reader_password
    pg.monitoring_password, pg.reader_password = "new-app-pw:@'", "new-reader-pw%/"

    second = pg.ensure()

    assert second.returncode == 0, second.stdout + second.stderr
    assert "NOTICE" not in second.stderr, second.stderr
    assert "creating" not in second.stdout, second.stdout
    assert monitoring_state(pg) == before
    with engine_of(pg, tmp_path, reader=True) as reader:
        assert labelled_rows(reader) == [(wine(5.0), 1)]
    with engine_of(pg, tmp_path) as engine, engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar() == 1
    for user, password in ((pg.monitoring_user, old_app), (pg.reader_user, old_reader)):
        with (
            pytest.raises(psycopg2.OperationalError, match="password authentication failed"),
            connect_psycopg2(pg, pg.monitoring_database, user, password),
        ):
            pass


def test_an_existing_volume_gets_the_prediction_log_at_its_next_start(
    pg: PostgresServer, tmp_path: Path
) -> None:
    # A volume of the previous version: MLflow's role and databases, some tracking data, and
    # no prediction log yet.
    query(pg, f'DROP DATABASE "{pg.monitoring_database}"')
    query(pg, f'DROP ROLE "{pg.monitoring_user}", "{pg.reader_user}"')
    with connect_psycopg2(pg, pg.database) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE runs (id serial PRIMARY KEY, name text)")
        cur.execute("INSERT INTO runs (name) VALUES ('before the upgrade')")
    mlflow_before = query(
        pg,
        "SELECT datname, pg_get_userbyid(datdba), datacl::text FROM pg_database"
        " WHERE datname IN (%s, %s) ORDER BY 1",
        (pg.database, pg.auth_database),
    )

    result = pg.ensure()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "creating database monitoring" in result.stdout
    assert "creating the prediction log tables" in result.stdout
    assert f"created role {pg.monitoring_user}" in result.stderr
    assert (
        query(
            pg,
            "SELECT datname, pg_get_userbyid(datdba), datacl::text FROM pg_database"
            " WHERE datname IN (%s, %s) ORDER BY 1",
            (pg.database, pg.auth_database),
        )
        == mlflow_before
    )
    with connect_psycopg2(pg, pg.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM runs")
        assert cur.fetchall() == [("before the upgrade",)]
    row = prediction(wine(1.0))
    with engine_of(pg, tmp_path) as engine, engine.begin() as conn:
        conn.execute(predictions.insert().values(**row))
        conn.execute(feedback.insert().values(prediction_id=row["id"], true_class_id=2))
    with engine_of(pg, tmp_path, reader=True) as reader:
        assert labelled_rows(reader) == [(wine(1.0), 2)]


def test_rights_granted_by_hand_are_taken_back_at_the_next_start(
    pg: PostgresServer, tmp_path: Path
) -> None:
    query(
        pg,
        f'GRANT UPDATE, TRUNCATE ON predictions, feedback TO "{pg.monitoring_user}";'
        f' GRANT CREATE ON SCHEMA public TO "{pg.reader_user}";'
        f' ALTER TABLE feedback OWNER TO "{pg.reader_user}"',
        database=pg.monitoring_database,
    )
    query(
        pg,
        f'GRANT pg_read_all_data TO "{pg.reader_user}";'
        f' GRANT CONNECT ON DATABASE "{pg.database}" TO "{pg.monitoring_user}";'
        f' ALTER ROLE "{pg.monitoring_user}" CREATEDB',
    )

    result = pg.ensure()

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"REVOKE pg_read_all_data FROM {pg.reader_user}" in result.stderr
    with engine_of(pg, tmp_path) as engine:
        refused(engine, "UPDATE predictions SET class_id = 1")
        refused(engine, "TRUNCATE feedback")
    with engine_of(pg, tmp_path, reader=True) as reader:
        refused(reader, "CREATE TABLE public.probe (id int)")
        refused(reader, "DELETE FROM feedback")
    with (
        pytest.raises(psycopg2.OperationalError, match="permission denied for database"),
        connect_psycopg2(pg, pg.database, pg.monitoring_user, pg.monitoring_password),
    ):
        pass
    assert query(
        pg, "SELECT rolcreatedb FROM pg_roles WHERE rolname = %s", (pg.monitoring_user,)
    ) == [(False,)]


def test_password_files_are_read_like_the_container_does(
    pg: PostgresServer, tmp_path: Path
) -> None:
    app_secret = tmp_path / "app"
    app_secret.write_text("app-from-a-file\n")
    reader_secret = tmp_path / "reader"
    reader_secret.write_text("reader-from-a-file\n")

    result = pg.ensure(
        MONITORING_DB_PASSWORD="",
        MONITORING_DB_PASSWORD_FILE=str(app_secret),
        MONITORING_READER_PASSWORD="",
        MONITORING_READER_PASSWORD_FILE=str(reader_secret),
    )

    assert result.returncode == 0, result.stdout + result.stderr
    pg.monitoring_password, pg.reader_password = "app-from-a-file", "reader-from-a-file"
    with engine_of(pg, tmp_path) as engine, engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT current_user").scalar() == pg.monitoring_user
    with engine_of(pg, tmp_path, reader=True) as reader, reader.connect() as conn:
        assert conn.exec_driver_sql("SELECT current_user").scalar() == pg.reader_user


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"MONITORING_DB_USER": "mlflow_app"},
            'MLFLOW_DB_USER and MONITORING_DB_USER are both "mlflow_app"',
        ),
        (
            {"MONITORING_READER_USER": "monitoring_app"},
            'MONITORING_DB_USER and MONITORING_READER_USER are both "monitoring_app"',
        ),
        (
            {"MONITORING_READER_USER": "postgres"},
            'POSTGRES_USER and MONITORING_READER_USER are both "postgres"',
        ),
        ({"MONITORING_DB": "mlflow_auth"}, 'MONITORING_DB is "mlflow_auth", one of MLflow\'s'),
        ({"MONITORING_DB": "template1"}, '"template1" is a system database'),
        ({"MONITORING_DB_USER": "m" * 64}, "MONITORING_DB_USER is longer than 63 bytes"),
        (
            {"MONITORING_DB_PASSWORD": ""},
            "MONITORING_DB_PASSWORD (or MONITORING_DB_PASSWORD_FILE) is not set",
        ),
        (
            {"MONITORING_READER_PASSWORD": ""},
            "MONITORING_READER_PASSWORD (or MONITORING_READER_PASSWORD_FILE) is not set",
        ),
    ],
    ids=[
        "api-role-is-mlflows",
        "one-role-for-both",
        "reader-is-the-superuser",
        "mlflows-database",
        "system-database",
        "name-too-long",
        "no-api-password",
        "no-reader-password",
    ],
)
def test_refuses_settings_that_break_least_privilege(
    shared_pg: PostgresServer, overrides: dict[str, str], message: str
) -> None:
    pg = shared_pg
    before = monitoring_state(pg)

    result = pg.ensure(**overrides)

    assert result.returncode == 1
    assert f"mlflow-db ensure: refused: {message}" in result.stderr
    assert monitoring_state(pg) == before


def test_refuses_the_bootstrap_superuser_as_a_monitoring_role(pg: PostgresServer) -> None:
    query(pg, "CREATE ROLE admin2 SUPERUSER LOGIN")
    before = monitoring_state(pg)

    result = pg.ensure(POSTGRES_USER="admin2", MONITORING_READER_USER=pg.superuser)

    assert result.returncode == 3
    assert 'MONITORING_READER_USER "postgres" is the superuser this cluster was created with' in (
        result.stderr
    )
    assert monitoring_state(pg) == before
    [(superuser,)] = query(pg, "SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'")
    assert superuser is True
