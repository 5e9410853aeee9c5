-- demo.sql: demo data for the local stack and the integration tests.
--
-- Loaded by `sql/apply.sh <uri> --demo` (after schema + migrations), or directly:
--   psql -X -v ON_ERROR_STOP=1 [-v demo_port_min=31000 -v demo_port_max=31003] \
--        -f sql/demo.sql <uri>
--
-- Client side
--   user          myuser / mypassword, active, balance 10 GB (10737418240 bytes)
--   whitelist     127.0.0.1/32, ::1/128 (local tests), plus the reference's
--                 examples 203.0.113.50 and 10.0.0.0/8
--
-- Providers (the stand-in upstream listens on demo_host, ports min..max)
--   slug         is_global country_format  username          password
--   demo-global  true      ISO             demo-global-user  demo-global-pass
--   demo-de      false     ISO_LOWERCASE   demo-de-user      de:p@ss/w0rd
--   demo-us      false     NO_SPACES       demo-us-user      demo-us-pass
--   demo-de's password holds ':', '@' and '/' on purpose: provider secrets
--   must be rendered as opaque credential parts, never parsed as URL syntax.
--
-- Host and ports are psql variables (defaults in brackets):
--   demo_host      [127.0.0.1]   base_url of every demo provider
--   demo_port_min  [24000]       port range of every demo provider ...
--   demo_port_max  [24003]
--   demo_global_port_min / _max, demo_de_port_min / _max, demo_us_port_min / _max
--                  per-provider overrides [demo_port_min / demo_port_max]
-- apply.sh maps the environment to them: GW_DEMO_HOST, GW_DEMO_PORT_MIN,
-- GW_DEMO_PORT_MAX (and GW_DEMO_GLOBAL_PORT_MIN ... GW_DEMO_US_PORT_MAX).
--
-- Idempotent: users and balances ON CONFLICT DO NOTHING, whitelist rows guarded
-- by NOT EXISTS; the demo providers are upserted by slug, and on a re-run only
-- their host and ports are updated, so a harness can re-point them at new ports.

\if :{?demo_host}
\else
\set demo_host 127.0.0.1
\endif
\if :{?demo_port_min}
\else
\set demo_port_min 24000
\endif
\if :{?demo_port_max}
\else
\set demo_port_max 24003
\endif
\if :{?demo_global_port_min}
\else
\set demo_global_port_min :demo_port_min
\endif
\if :{?demo_global_port_max}
\else
\set demo_global_port_max :demo_port_max
\endif
\if :{?demo_de_port_min}
\else
\set demo_de_port_min :demo_port_min
\endif
\if :{?demo_de_port_max}
\else
\set demo_de_port_max :demo_port_max
\endif
\if :{?demo_us_port_min}
\else
\set demo_us_port_min :demo_port_min
\endif
\if :{?demo_us_port_max}
\else
\set demo_us_port_max :demo_port_max
\endif

BEGIN;

INSERT INTO users (username, password, is_active)
VALUES ('myuser', 'mypassword', true)
ON CONFLICT (username) DO NOTHING;

-- 10 GB; balances.user_id has the reference's unique index idx_balances_user_id.
INSERT INTO balances (user_id, traffic_bytes, used_bytes)
SELECT id, 10737418240, 0 FROM users WHERE username = 'myuser'
ON CONFLICT (user_id) DO NOTHING;

INSERT INTO authorized_ips (ip, description, is_active)
SELECT v.ip, v.description, true
FROM (VALUES
        ('127.0.0.1/32', 'Local tests (IPv4 loopback)'),
        ('::1/128', 'Local tests (IPv6 loopback)'),
        ('203.0.113.50', 'Office IP'),
        ('10.0.0.0/8', 'Internal network')
     ) AS v (ip, description)
WHERE NOT EXISTS (SELECT 1 FROM authorized_ips a WHERE a.ip = v.ip);

INSERT INTO proxies (base_url, name, slug, username, password, url_template,
                     port_min, port_max, is_visible, is_disabled, is_global, country_format)
VALUES
    (:'demo_host', 'Demo Global', 'demo-global', 'demo-global-user', 'demo-global-pass',
     '{username}-country-{country}-session-{session_id}-sessTime-{duration}:{password}@{host}:{port}',
     (:'demo_global_port_min')::int, (:'demo_global_port_max')::int,
     true, false, true, 'ISO'),
    (:'demo_host', 'Demo Germany', 'demo-de', 'demo-de-user', 'de:p@ss/w0rd',
     '{username}_cc-{country}_sid-{session_id}_ttl-{duration}:{password}@{host}:{port}',
     (:'demo_de_port_min')::int, (:'demo_de_port_max')::int,
     true, false, false, 'ISO_LOWERCASE'),
    (:'demo_host', 'Demo United States', 'demo-us', 'demo-us-user', 'demo-us-pass',
     '{username}-country-{country}-session-{session_id}-sessTime-{duration}:{password}@{host}:{port}',
     (:'demo_us_port_min')::int, (:'demo_us_port_max')::int,
     true, false, false, 'NO_SPACES')
ON CONFLICT (slug) DO UPDATE
    SET base_url = EXCLUDED.base_url,
        port_min = EXCLUDED.port_min,
        port_max = EXCLUDED.port_max
    WHERE (proxies.base_url, proxies.port_min, proxies.port_max)
          IS DISTINCT FROM (EXCLUDED.base_url, EXCLUDED.port_min, EXCLUDED.port_max);

COMMIT;
