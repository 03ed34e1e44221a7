-- Attempts that are limited per client address, recorded here so that every Apotheca host
-- counts the same ones (docs/multi-host.md). Append-only logs, like a tenant's
-- login_failures: concurrent attempts never contend, and "N in the last M minutes" is one
-- range scan. Control deletes rows older than a day with each host beat.

-- "Create your pharmacy" attempts on the public site, per client address (`[worker]
-- signups_per_hour`). The public site's role records and counts them (and takes its own
-- refused attempt back); see tenancy::roles::public_role_sql.
CREATE TABLE signup_attempts (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address  text NOT NULL CHECK (length(address) BETWEEN 1 AND 200),
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signup_attempts_address_at ON signup_attempts (address, at);
CREATE INDEX signup_attempts_at ON signup_attempts (at);

-- Failed operator logins (each attempt is one until its password proves good), per lowercased
-- username and the client address the public site saw. Only control reads and writes them.
CREATE TABLE operator_login_failures (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username  text NOT NULL CHECK (length(username) <= 200),
    address   text NOT NULL CHECK (length(address) BETWEEN 1 AND 200),
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operator_login_failures_username_address_at
    ON operator_login_failures (username, address, at);
CREATE INDEX operator_login_failures_at ON operator_login_failures (at);

REVOKE ALL ON signup_attempts, operator_login_failures FROM PUBLIC;
