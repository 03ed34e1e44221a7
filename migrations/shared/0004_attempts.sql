-- Attempts that are limited per client address, recorded here so that every Apotheca host
-- counts the same ones (docs/multi-host.md). Append-only logs, like a tenant's
-- login_failures: concurrent attempts never contend, and "N in the last M minutes" is one
-- range scan. Control deletes rows older than an hour (the longest window) about once a
-- minute.

-- "Create your pharmacy" attempts on the public site, per client address (`[worker]
-- signups_per_hour`). No role has any grant on the table: the public site's role records and
-- counts through apotheca_signup_attempt() alone.
CREATE TABLE signup_attempts (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address  text NOT NULL CHECK (length(address) BETWEEN 1 AND 200),
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signup_attempts_address_at ON signup_attempts (address, at);
CREATE INDEX signup_attempts_at ON signup_attempts (at);

-- Records a sign-up attempt from `address` unless `max_attempts` were recorded within the
-- last `window_secs`: 0 when it was recorded (the attempt goes on), else the seconds until
-- the oldest of them leaves the window (a refused attempt is not recorded). One address's
-- attempts are taken one at a time (a transaction's advisory lock), so attempts in parallel
-- never slip under the limit together.
CREATE FUNCTION apotheca_signup_attempt(address text, max_attempts integer, window_secs double precision)
RETURNS double precision
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    recent bigint;
    oldest timestamptz;
BEGIN
    IF address IS NULL OR length(address) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a client address is 1 to 200 characters' USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('apotheca_signup_attempt ' || address, 0));
    SELECT count(*), min(a.at) INTO recent, oldest
      FROM public.signup_attempts a
     WHERE a.address = apotheca_signup_attempt.address
       AND a.at > clock_timestamp() - make_interval(secs => window_secs);
    IF recent >= max_attempts THEN
        RETURN greatest(extract(epoch FROM oldest + make_interval(secs => window_secs)
                                          - clock_timestamp())::double precision, 0.001);
    END IF;
    INSERT INTO public.signup_attempts (address, at)
    VALUES (apotheca_signup_attempt.address, clock_timestamp());
    RETURN 0;
END
$$;

-- Failed operator logins (each attempt is one until its password proves good), per lowercased
-- username and the client address the public site saw. Only control reads and writes them.
CREATE TABLE operator_login_failures (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username  text NOT NULL CHECK (length(username) BETWEEN 1 AND 150),
    address   text NOT NULL CHECK (length(address) BETWEEN 1 AND 200),
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operator_login_failures_username_address_at
    ON operator_login_failures (username, address, at);
CREATE INDEX operator_login_failures_address_at ON operator_login_failures (address, at);
CREATE INDEX operator_login_failures_at ON operator_login_failures (at);

REVOKE ALL ON signup_attempts, operator_login_failures FROM PUBLIC;
REVOKE ALL ON FUNCTION apotheca_signup_attempt(text, integer, double precision) FROM PUBLIC;
