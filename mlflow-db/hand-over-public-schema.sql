-- Included by ensure-roles.sql once per database, right after \connect: gives the public
-- schema and every table, sequence, view, materialized view, foreign table, type, domain and
-- routine in it to the role :app_role, in one transaction, with a NOTICE per change.
-- What follows its owner object is left alone: indexes, row types, array types and the
-- sequences of serial and identity columns (ALTER TABLE moves them along), and the members
-- of an extension. (REASSIGN OWNED BY cannot be used: it refuses the bootstrap superuser,
-- which owns MLflow's tables on volumes of earlier versions.)

SET client_min_messages = notice;
SET lock_timeout = '30s';
-- Names below come out schema-qualified (public is not on this path).
SET search_path = pg_catalog, pg_temp;
SET mlflow_db.app_role = :'app_role';

DO $$
DECLARE
  app_role text := current_setting('mlflow_db.app_role');
  statement text;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'public') THEN
    EXECUTE format('CREATE SCHEMA public AUTHORIZATION %I', app_role);
    RAISE NOTICE 'created schema public';
  END IF;

  FOR statement IN
    WITH public_schema AS (SELECT oid FROM pg_namespace WHERE nspname = 'public'),
    objects (kind, name, owner, catalog, oid) AS (
      SELECT 'SCHEMA', 'public', n.nspowner, 'pg_namespace'::regclass, n.oid
      FROM pg_namespace n
      WHERE n.oid = (SELECT oid FROM public_schema)
      UNION ALL
      SELECT CASE c.relkind
               WHEN 'S' THEN 'SEQUENCE'
               WHEN 'v' THEN 'VIEW'
               WHEN 'm' THEN 'MATERIALIZED VIEW'
               WHEN 'f' THEN 'FOREIGN TABLE'
               WHEN 'c' THEN 'TYPE'
               ELSE 'TABLE'
             END,
             c.oid::regclass::text, c.relowner, 'pg_class'::regclass, c.oid
      FROM pg_class c
      WHERE c.relnamespace = (SELECT oid FROM public_schema)
        AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'c')
        AND NOT (c.relkind = 'S' AND EXISTS (
          SELECT FROM pg_depend d
          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
            AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
      UNION ALL
      SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
             t.oid::regtype::text, t.typowner, 'pg_type'::regclass, t.oid
      FROM pg_type t
      WHERE t.typnamespace = (SELECT oid FROM public_schema)
        AND t.typrelid = 0
        AND t.typtype <> 'm'
        AND NOT EXISTS (SELECT FROM pg_type e WHERE e.typarray = t.oid)
      UNION ALL
      SELECT CASE p.prokind WHEN 'a' THEN 'AGGREGATE' ELSE 'ROUTINE' END,
             p.oid::regprocedure::text, p.proowner, 'pg_proc'::regclass, p.oid
      FROM pg_proc p
      WHERE p.pronamespace = (SELECT oid FROM public_schema)
    )
    SELECT format('ALTER %s %s OWNER TO %I', o.kind, o.name, app_role)
    FROM objects o
    WHERE o.owner <> (SELECT oid FROM pg_roles WHERE rolname = app_role)
      AND NOT EXISTS (
        SELECT FROM pg_depend d
        WHERE d.classid = o.catalog AND d.objid = o.oid AND d.deptype = 'e')
    ORDER BY o.kind = 'SCHEMA' DESC, o.kind, o.name
  LOOP
    EXECUTE statement;
    RAISE NOTICE '%', statement;
  END LOOP;
END
$$;
