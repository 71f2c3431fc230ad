-- Included by ensure-roles.sql, connected to the prediction log's database (:monitoring_db) as
-- the superuser: the prediction log's tables and who may do what with them.
--
-- The tables are owned by the superuser. Their columns are mirrored, for the services, by
-- common/wine_mlops/monitoring_db.py (keep both the same). A new column goes here as
-- ALTER TABLE ... ADD COLUMN IF NOT EXISTS, so that existing volumes get it at their next start.
--
-- predictions  one row per predicted wine: the answer's prediction_id, the served model, the 13
--              feature values (jsonb array, model order), the class and the 3 probabilities
--              (jsonb array, class id order). Old rows are deleted by the API (retention).
-- feedback     the true class of a logged prediction, at most one each; deleted with it.
--
-- Privileges (nothing more: no UPDATE, TRUNCATE, REFERENCES or TRIGGER, no CREATE):
--   :monitoring_app_role     SELECT, INSERT, DELETE on predictions; SELECT, INSERT on feedback
--                            (deleting a prediction deletes its feedback through the cascade)
--   :monitoring_reader_role  SELECT on both
-- Every run revokes whatever else was granted on them, then grants these again.

SET client_min_messages = notice;
SET lock_timeout = '30s';
-- Names below are schema-qualified (public is not on this path).
SET search_path = pg_catalog, pg_temp;

SELECT count(*) < 2 AS monitoring_tables_missing
FROM pg_class
WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'
  AND relname IN ('predictions', 'feedback') \gset
\if :monitoring_tables_missing
  \echo 'mlflow-db ensure: creating the prediction log tables in database' :monitoring_db
\endif

-- "already exists, skipping" is no news on a later start.
SET client_min_messages = warning;

CREATE TABLE IF NOT EXISTS public.predictions (
  id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  model_name text NOT NULL,
  model_version text NOT NULL,
  features jsonb NOT NULL,
  class_id smallint NOT NULL,
  probabilities jsonb NOT NULL,
  CONSTRAINT predictions_pkey PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS predictions_created_at_idx ON public.predictions (created_at);

CREATE TABLE IF NOT EXISTS public.feedback (
  prediction_id uuid NOT NULL,
  true_class_id smallint NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT feedback_pkey PRIMARY KEY (prediction_id),
  CONSTRAINT feedback_prediction_id_fkey FOREIGN KEY (prediction_id)
    REFERENCES public.predictions (id) ON DELETE CASCADE,
  CONSTRAINT feedback_true_class_id_check CHECK (true_class_id BETWEEN 0 AND 2)
);
CREATE INDEX IF NOT EXISTS feedback_received_at_idx ON public.feedback (received_at);

SET client_min_messages = notice;

-- One transaction: a service never sees the moment between a REVOKE and its GRANT.
BEGIN;

-- The superuser owns them, whoever made them: an owner could grant itself anything.
ALTER TABLE public.predictions OWNER TO CURRENT_USER;
ALTER TABLE public.feedback OWNER TO CURRENT_USER;

-- The schema: looked into by the two roles, created in by nobody but the superuser.
REVOKE ALL ON SCHEMA public FROM PUBLIC, :"monitoring_app_role", :"monitoring_reader_role";
GRANT USAGE ON SCHEMA public TO :"monitoring_app_role", :"monitoring_reader_role";

REVOKE ALL ON TABLE public.predictions, public.feedback
  FROM PUBLIC, :"monitoring_app_role", :"monitoring_reader_role";
GRANT SELECT, INSERT, DELETE ON TABLE public.predictions TO :"monitoring_app_role";
GRANT SELECT, INSERT ON TABLE public.feedback TO :"monitoring_app_role";
GRANT SELECT ON TABLE public.predictions, public.feedback TO :"monitoring_reader_role";

COMMIT;
