-- Group commits ask once per batch whether any run waits on a workflow's or a message's
-- events before signalling row by row; this keeps that question an index probe.
CREATE INDEX waits_open_source ON waits (environment_id, event_type, source_key, event_key)
    WHERE status = 'open';
