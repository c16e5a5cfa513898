//! Versioned schema migrations, applied in order, each in its own transaction. Never edit a
//! released migration: add a new one. The SQL here is plain ANSI (types and constraints
//! PostgreSQL accepts too).

pub const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "accounts, access keys, resource ownership, client tokens",
    r#"
CREATE TABLE accounts (
    id          BIGINT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);
CREATE TABLE access_keys (
    id          TEXT PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts(id),
    secret      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('Active', 'Inactive')),
    created_at  TEXT NOT NULL
);
CREATE INDEX access_keys_by_account ON access_keys(account_id);
-- Every resource of every service, whatever its kind: who owns it and where it lives.
-- Service tables reference this row; ownership checks and tags go through it.
CREATE TABLE resources (
    id          TEXT PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts(id),
    kind        TEXT NOT NULL,
    region_id   TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX resources_by_owner ON resources(account_id, kind, region_id, id);
-- ClientToken idempotency: the first answer to (account, action, token) is kept and
-- returned again for a repeat with the same parameters.
CREATE TABLE client_tokens (
    account_id  BIGINT NOT NULL,
    action      TEXT NOT NULL,
    token       TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    reply       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (account_id, action, token)
);
"#,
)];
