-- Instants are BIGINT milliseconds since the epoch on both backends; JSON is TEXT so the
-- same queries read it on SQLite and PostgreSQL.

CREATE TABLE environments (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    enhanced_security BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE service_tokens (
    token_hash TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL,
    public_key_pem TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX signing_keys_env ON signing_keys (environment_id);

CREATE TABLE users (
    environment_id TEXT NOT NULL,
    id TEXT NOT NULL,
    properties TEXT NOT NULL,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (environment_id, id)
);
CREATE INDEX users_env_order ON users (environment_id, inserted_at, id);

CREATE TABLE workflows (
    environment_id TEXT NOT NULL,
    key TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    draft TEXT NOT NULL,
    committed_version BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (environment_id, key)
);

CREATE TABLE workflow_versions (
    environment_id TEXT NOT NULL,
    key TEXT NOT NULL,
    version BIGINT NOT NULL,
    definition TEXT NOT NULL,
    committed_at BIGINT NOT NULL,
    PRIMARY KEY (environment_id, key, version)
);

CREATE TABLE idempotency_keys (
    environment_id TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (environment_id, key)
);

CREATE TABLE workflow_runs (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL,
    workflow_key TEXT NOT NULL,
    workflow_version BIGINT NOT NULL,
    recipient_count BIGINT NOT NULL,
    inserted_at BIGINT NOT NULL
);

CREATE TABLE recipient_runs (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL,
    workflow_run_id TEXT NOT NULL,
    workflow_key TEXT NOT NULL,
    workflow_version BIGINT NOT NULL,
    recipient_id TEXT NOT NULL,
    actor TEXT,
    tenant TEXT,
    data TEXT NOT NULL,
    cancellation_key TEXT,
    status TEXT NOT NULL,
    step_cursor BIGINT NOT NULL,
    error_count BIGINT NOT NULL,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX recipient_runs_env ON recipient_runs (environment_id, id);
CREATE INDEX recipient_runs_cancel ON recipient_runs (environment_id, workflow_key, cancellation_key);
CREATE INDEX recipient_runs_recipient ON recipient_runs (environment_id, recipient_id);

CREATE TABLE run_events (
    id TEXT PRIMARY KEY,
    recipient_run_id TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    step_ref TEXT,
    step_type TEXT,
    attempt BIGINT NOT NULL,
    data TEXT NOT NULL,
    inserted_at BIGINT NOT NULL
);
CREATE INDEX run_events_run ON run_events (recipient_run_id, id);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL,
    recipient_run_id TEXT NOT NULL,
    workflow_run_id TEXT NOT NULL,
    step_ref TEXT NOT NULL,
    workflow_key TEXT NOT NULL,
    workflow_version BIGINT NOT NULL,
    categories TEXT NOT NULL,
    channel_key TEXT NOT NULL,
    channel_type TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    actors TEXT NOT NULL,
    tenant TEXT,
    status TEXT NOT NULL,
    content TEXT NOT NULL,
    data TEXT NOT NULL,
    seen_at BIGINT,
    read_at BIGINT,
    interacted_at BIGINT,
    link_clicked_at BIGINT,
    archived_at BIGINT,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- Architecture invariant: one message per (recipient run, step).
    UNIQUE (recipient_run_id, step_ref)
);
CREATE INDEX messages_feed ON messages (environment_id, recipient_id, channel_key, id);
CREATE INDEX messages_env ON messages (environment_id, id);

CREATE TABLE message_events (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    inserted_at BIGINT NOT NULL
);
CREATE INDEX message_events_message ON message_events (message_id, id);

CREATE TABLE delivery_logs (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    service_name TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    inserted_at BIGINT NOT NULL
);
CREATE INDEX delivery_logs_message ON delivery_logs (message_id, id);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ref_id TEXT NOT NULL,
    run_at BIGINT NOT NULL,
    lease TEXT,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs (run_at);
CREATE INDEX jobs_ref ON jobs (ref_id);

CREATE TABLE bulk_operations (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    estimated_total_rows BIGINT NOT NULL,
    processed_rows BIGINT NOT NULL,
    success_count BIGINT NOT NULL,
    error_count BIGINT NOT NULL,
    error_items TEXT NOT NULL,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT
);
