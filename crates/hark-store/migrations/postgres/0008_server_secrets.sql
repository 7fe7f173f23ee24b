-- Secrets the server itself generates once and every node shares, by name (the link
-- and open tracking key signs tracking URLs so any node can check them without a row
-- per link). The first node to start inserts; the others read what it inserted.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
