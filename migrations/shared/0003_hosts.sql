-- The Apotheca hosts sharing this database (many hosts behind a balancer, docs/multi-host.md).
-- Each host's control daemon records itself when it starts and beats every
-- `[control.serve] heartbeat_secs`, with the tenants it runs workers for; a clean stop says so.
-- A host whose beat is older than `[control.serve] host_gone_secs` is marked gone by the first other
-- host to notice. Only control reads and writes it (as the admin); no role is granted anything.

CREATE TABLE hosts (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    -- Where its proxy is reached (as the operator configured it; shown, never dialled).
    address       text NOT NULL DEFAULT '' CHECK (length(address) <= 200),
    version       text NOT NULL CHECK (length(version) <= 100),
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    -- Schema -> ready workers on this host at the last beat.
    workers       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(workers) = 'object'),
    stopped_at    timestamptz,
    gone_at       timestamptz
);
