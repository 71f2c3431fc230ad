-- The ensure step of mlflow-db, run by ensure-roles.sh as the superuser over the Unix socket,
-- with the psql variables app_role, tracking_db, auth_db, monitoring_db, monitoring_app_role,
-- monitoring_reader_role and the environment variables MLFLOW_DB_PASSWORD,
-- MONITORING_DB_PASSWORD and MONITORING_READER_PASSWORD. Every statement is idempotent: a
-- second run changes nothing (the passwords are set again, with a new salt).
--
-- 1. Refuses an app role that is the superuser running this, or the superuser the cluster was
--    created with (it can never lose its superuser attribute).
-- 2. The role: LOGIN and nothing more (NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
--    NOBYPASSRLS); its password is MLFLOW_DB_PASSWORD, set at every run (rotation).
-- 3. The tracking and auth databases exist and are owned by the role; PUBLIC has no privilege
--    on them (no CONNECT, TEMPORARY or CREATE): only their owner and superusers get in.
-- 4. In each database, the public schema and everything in it are owned by the role
--    (hand-over-public-schema.sql): volumes of earlier versions have MLflow's tables owned by
--    the superuser, and MLflow's migrations must be able to alter them.
-- 5. The prediction log's roles (monitoring_app_role for the API, monitoring_reader_role for
--    retraining): LOGIN and nothing more, members of no role, passwords set at every run.
--    Neither owns anything, nor can it connect to MLflow's databases.
-- 6. The prediction log's database exists and is owned by the superuser; PUBLIC has no
--    privilege on it, the two roles CONNECT only.
-- 7. In it, monitoring.sql creates the tables (owned by the superuser) and grants each role
--    exactly what its service does with them.

\set ON_ERROR_STOP on
\getenv app_password MLFLOW_DB_PASSWORD
SET client_min_messages = notice;
SET lock_timeout = '30s';
SET mlflow_db.app_role = :'app_role';

-- 1 and 2
DO $$
DECLARE
  app_role text := current_setting('mlflow_db.app_role');
BEGIN
  IF app_role = current_user THEN
    RAISE EXCEPTION 'MLFLOW_DB_USER "%" is the superuser running this step', app_role
      USING HINT = 'MLflow must log in as a role of its own: give MLFLOW_DB_USER another name.';
  END IF;
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = app_role AND oid = 10) THEN
    RAISE EXCEPTION 'MLFLOW_DB_USER "%" is the superuser this cluster was created with', app_role
      USING HINT = 'Set POSTGRES_USER to that name, and give MLFLOW_DB_USER another one.';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = app_role) THEN
    EXECUTE format('CREATE ROLE %I', app_role);
    RAISE NOTICE 'created role %', app_role;
  END IF;
END
$$;

ALTER ROLE :"app_role"
  WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'app_password';

-- 3 (CREATE DATABASE cannot run inside a DO block: psql runs the generated statements)
SELECT count(*) > 0 AS databases_missing, string_agg(wanted.db, ', ') AS missing_databases
FROM unnest(ARRAY[:'tracking_db', :'auth_db']) AS wanted(db)
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = wanted.db) \gset
\if :databases_missing
  \echo 'mlflow-db ensure: creating database(s)' :missing_databases
\endif
SELECT format('CREATE DATABASE %I OWNER %I', wanted.db, :'app_role')
FROM unnest(ARRAY[:'tracking_db', :'auth_db']) AS wanted(db)
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = wanted.db) \gexec

ALTER DATABASE :"tracking_db" OWNER TO :"app_role";
ALTER DATABASE :"auth_db" OWNER TO :"app_role";
REVOKE ALL ON DATABASE :"tracking_db", :"auth_db" FROM PUBLIC;

-- 4
\connect :"tracking_db"
\ir hand-over-public-schema.sql
\connect :"auth_db"
\ir hand-over-public-schema.sql

-- 5 (no reader or writer of the prediction log may be a superuser: the same refusals as above)
\connect postgres
\getenv monitoring_app_password MONITORING_DB_PASSWORD
\getenv monitoring_reader_password MONITORING_READER_PASSWORD
SET client_min_messages = notice;
SET lock_timeout = '30s';
SET mlflow_db.monitoring_app_role = :'monitoring_app_role';
SET mlflow_db.monitoring_reader_role = :'monitoring_reader_role';

DO $$
DECLARE
  setting text;
  role_name text;
  granted text;
BEGIN
  FOR setting, role_name IN
    SELECT * FROM (VALUES
      ('MONITORING_DB_USER', current_setting('mlflow_db.monitoring_app_role')),
      ('MONITORING_READER_USER', current_setting('mlflow_db.monitoring_reader_role'))
    ) AS wanted (setting, role_name)
  LOOP
    IF role_name = current_user THEN
      RAISE EXCEPTION '% "%" is the superuser running this step', setting, role_name
        USING HINT = format('Give %s another name.', setting);
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = role_name AND oid = 10) THEN
      RAISE EXCEPTION '% "%" is the superuser this cluster was created with', setting, role_name
        USING HINT = format('Give %s another name.', setting);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
      EXECUTE format('CREATE ROLE %I', role_name);
      RAISE NOTICE 'created role %', role_name;
    END IF;
    -- A membership would lend it another role's rights.
    FOR granted IN
      SELECT g.rolname FROM pg_auth_members m
      JOIN pg_roles g ON g.oid = m.roleid
      JOIN pg_roles r ON r.oid = m.member
      WHERE r.rolname = role_name
      ORDER BY 1
    LOOP
      EXECUTE format('REVOKE %I FROM %I', granted, role_name);
      RAISE NOTICE 'REVOKE % FROM %', granted, role_name;
    END LOOP;
  END LOOP;
END
$$;

ALTER ROLE :"monitoring_app_role"
  WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'monitoring_app_password';
ALTER ROLE :"monitoring_reader_role"
  WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'monitoring_reader_password';
REVOKE ALL ON DATABASE :"tracking_db", :"auth_db"
  FROM :"monitoring_app_role", :"monitoring_reader_role";

-- 6
SELECT NOT EXISTS (SELECT FROM pg_database WHERE datname = :'monitoring_db')
  AS monitoring_db_missing \gset
\if :monitoring_db_missing
  \echo 'mlflow-db ensure: creating database' :monitoring_db
  CREATE DATABASE :"monitoring_db";
\endif
BEGIN;  -- no login is turned away between the REVOKE and the GRANT
ALTER DATABASE :"monitoring_db" OWNER TO CURRENT_USER;
REVOKE ALL ON DATABASE :"monitoring_db"
  FROM PUBLIC, :"app_role", :"monitoring_app_role", :"monitoring_reader_role";
GRANT CONNECT ON DATABASE :"monitoring_db" TO :"monitoring_app_role", :"monitoring_reader_role";
COMMIT;

-- 7
\connect :"monitoring_db"
\ir monitoring.sql
