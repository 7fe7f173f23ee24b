-- Only runs triggered with a cancellation key can be cancelled by one, and most triggers
-- carry none: index those runs alone, so the others add no entry here. Every query
-- through this index names a cancellation key, which implies it is not null.
DROP INDEX recipient_runs_cancel;
CREATE INDEX recipient_runs_cancel ON recipient_runs (environment_id, workflow_key, cancellation_key)
    WHERE cancellation_key IS NOT NULL;
