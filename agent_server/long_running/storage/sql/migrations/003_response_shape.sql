-- What the Response object needs beyond the original columns: whether it ran in
-- the background (standard requests are stored too) and MLflow's custom_outputs.
-- A constant default and a nullable column: catalog changes, no table rewrite.
ALTER TABLE {schema}.responses ADD COLUMN IF NOT EXISTS background boolean NOT NULL DEFAULT true;
ALTER TABLE {schema}.responses ADD COLUMN IF NOT EXISTS custom_outputs jsonb;
