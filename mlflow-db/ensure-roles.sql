-- The ensure step of mlflow-db, run by ensure-roles.sh as the superuser over the Unix socket,
-- with the psql variables app_role, tracking_db, auth_db and the environment variable
-- MLFLOW_DB_PASSWORD. Every statement is idempotent: a second run changes nothing (the
-- password is set again, with a new salt).
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
