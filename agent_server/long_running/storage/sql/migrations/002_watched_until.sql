-- Writers NOTIFY a response's new events only while a tail in another process
-- watches it: that tail sets watched_until (and renews it while it waits).
-- Nullable with no default: adding it is a catalog change, no table rewrite.
ALTER TABLE {schema}.responses ADD COLUMN IF NOT EXISTS watched_until timestamptz;
