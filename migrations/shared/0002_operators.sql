-- The hosting provider's operators: who may use the operator console on the public site.
-- Only control reads these tables (as the admin); no grant is given to any role, so neither
-- the public site's role nor a tenant role can read them (tables in public grant nothing to
-- PUBLIC). The public site only forwards an operator's session token to control, which
-- checks it here.

CREATE TABLE operators (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Stored lowercased, so "Alice" and "alice" are one operator.
    username       text NOT NULL UNIQUE
                   CHECK (username = lower(username) AND username ~ '^[a-z0-9._@+-]{1,150}$'),
    -- argon2id PHC string.
    password_hash  text NOT NULL CHECK (password_hash LIKE '$argon2%'),
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz
);

-- A logged-in operator. The token itself is only ever in the operator's cookie; this holds its
-- SHA-256, so a copy of the table logs nobody in.
CREATE TABLE operator_sessions (
    token_hash   bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    operator_id  bigint NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    CHECK (expires_at > created_at)
);
CREATE INDEX operator_sessions_operator ON operator_sessions (operator_id);
CREATE INDEX operator_sessions_expiry ON operator_sessions (expires_at);

-- Said outright, whatever default privileges the database's admin may have set up.
REVOKE ALL ON operators, operator_sessions FROM PUBLIC;
