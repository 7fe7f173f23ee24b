-- Run events, message events and delivery logs are only ever read through their parent
-- (a run's events, a message's events or logs) in id order, never by id alone. Keyed by
-- (parent, id), each row adds one index entry instead of two: the separate index on the
-- parent was the only one reads used, and the key on id alone only checked uniqueness.
-- SQLite cannot change a table's key in place, so each table is copied into a new one.
CREATE TABLE run_events_by_run (
    id TEXT NOT NULL,
    recipient_run_id TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    step_ref TEXT,
    step_type TEXT,
    attempt INTEGER NOT NULL,
    data TEXT NOT NULL,
    inserted_at INTEGER NOT NULL,
    PRIMARY KEY (recipient_run_id, id)
);
INSERT INTO run_events_by_run (id, recipient_run_id, event, status, step_ref, step_type, attempt, data, inserted_at)
    SELECT id, recipient_run_id, event, status, step_ref, step_type, attempt, data, inserted_at FROM run_events;
DROP TABLE run_events;
ALTER TABLE run_events_by_run RENAME TO run_events;

CREATE TABLE message_events_by_message (
    id TEXT NOT NULL,
    environment_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    inserted_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, id)
);
INSERT INTO message_events_by_message (id, environment_id, message_id, recipient_id, event_type, data, inserted_at)
    SELECT id, environment_id, message_id, recipient_id, event_type, data, inserted_at FROM message_events;
DROP TABLE message_events;
ALTER TABLE message_events_by_message RENAME TO message_events;

CREATE TABLE delivery_logs_by_message (
    id TEXT NOT NULL,
    environment_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    service_name TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    inserted_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, id)
);
INSERT INTO delivery_logs_by_message (id, environment_id, message_id, service_name, request, response, inserted_at)
    SELECT id, environment_id, message_id, service_name, request, response, inserted_at FROM delivery_logs;
DROP TABLE delivery_logs;
ALTER TABLE delivery_logs_by_message RENAME TO delivery_logs;
