-- The public schema: which tenants exist, how they are reached and how their workers scale.
-- (The migration records, public.apotheca_migrations, are created by the runner itself
-- before any file runs, since it records this file too.)

-- Tenant roles must never create objects here, whatever the server's defaults were.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

CREATE TABLE tenants (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schema_name             text NOT NULL UNIQUE
                            CHECK (schema_name ~ '^[a-z][a-z0-9_]{0,62}$' AND schema_name <> 'public'),
    name                    text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    status                  text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    -- The tenant's own PostgreSQL role. Roles are cluster-wide, so the name carries a hash of
    -- the database as well as the schema: two databases on one cluster never collide.
    db_role                 text NOT NULL UNIQUE,
    created_at              timestamptz NOT NULL DEFAULT now(),
    -- Worker policy, read by control.
    min_workers             integer NOT NULL DEFAULT 0 CHECK (min_workers >= 0),
    max_workers             integer NOT NULL DEFAULT 4 CHECK (max_workers >= 1),
    idle_timeout_secs       integer NOT NULL DEFAULT 300 CHECK (idle_timeout_secs >= 1),
    max_inflight_per_worker integer NOT NULL DEFAULT 32 CHECK (max_inflight_per_worker >= 1),
    queue_length            integer NOT NULL DEFAULT 128 CHECK (queue_length >= 0),
    CHECK (min_workers <= max_workers)
);

CREATE TABLE domains (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Stored normalised (IDNA punycode, lowercase, no port, no trailing dot).
    domain      text NOT NULL UNIQUE
                CHECK (domain = lower(domain) AND length(domain) BETWEEN 1 AND 253
                       AND domain !~ '[:/ ]' AND domain !~ '\.$'),
    tenant_id   bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    is_primary  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domains_tenant ON domains (tenant_id);
-- At most one primary per tenant here; "at least one" is kept by control, which never
-- removes a primary without naming the next one.
CREATE UNIQUE INDEX domains_one_primary ON domains (tenant_id) WHERE is_primary;

-- Pre-migrated empty tenant schemas (named apotheca_spare_*, a prefix no tenant may use).
-- Building a tenant schema is ~80 relations of DDL; create-tenant instead renames a spare
-- that is at the current migration version, which takes milliseconds. Control keeps the
-- pool topped up off the request path and migrates spares with the tenants.
CREATE TABLE spare_schemas (
    schema_name text PRIMARY KEY CHECK (schema_name ~ '^apotheca_spare_[a-z0-9]+$'),
    -- Its dormant (NOLOGIN) role, already holding the grants on the schema's objects.
    db_role     text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Control's own facts about this database; today a check value of the server secret, so a
-- different secret (another state folder, a typo) is refused before it derives wrong tenant
-- role passwords.
CREATE TABLE control_state (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- A worker logs in as its tenant's role, which has no rights on these tables; this tells it
-- the schema version of its own tenant (found by the role it logged in as) and nothing else.
CREATE FUNCTION apotheca_tenant_migration_version() RETURNS integer
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT coalesce(max(m.version), 0)
    FROM public.tenants t
    JOIN public.apotheca_migrations m ON m.schema_name = t.schema_name
    WHERE t.db_role = session_user
$$;
