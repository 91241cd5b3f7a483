"""The read model, segments, memberships, sync bookkeeping, outbox and inbox.

Typed columns of declared fields (`profiles.f<id>`) are not created here: the attribute
schema is configuration, applied at start by `adapters.catalog.apply_declared_fields`.
"""

from alembic import op

from cdp_bus.migrations import create_bus_tables, drop_bus_tables

revision = "0001"
down_revision = None

SCHEMA = "segmentation"
_CANONICAL_INSTANT = (
    "'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{6}Z$'"
)

UP = f"""
-- Reading undeclared fields from the stored document, by their JSON type, without a cast
-- that could fail on a value of another type (they answer NULL instead).
CREATE FUNCTION {SCHEMA}.as_number(v jsonb) RETURNS double precision
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN v::double precision END $$;
CREATE FUNCTION {SCHEMA}.as_text(v jsonb) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT CASE WHEN jsonb_typeof(v) = 'string' THEN v #>> '{{}}' END $$;
CREATE FUNCTION {SCHEMA}.as_bool(v jsonb) RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT CASE WHEN jsonb_typeof(v) = 'boolean' THEN v::boolean END $$;
-- Instants are stored in one fixed-width UTC form, so their text order is time order.
CREATE FUNCTION {SCHEMA}.as_time(v jsonb) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT CASE WHEN jsonb_typeof(v) = 'string'
          AND (v #>> '{{}}') ~ {_CANONICAL_INSTANT}
          THEN v #>> '{{}}' END $$;

-- The read model: one row per customer, narrow (typed columns of declared fields are added
-- to it at start), and the normalised document beside it for undeclared fields.
CREATE TABLE {SCHEMA}.profiles (
  customer_id uuid PRIMARY KEY,
  version bigint NOT NULL,
  -- 0 active, 1 merged into another customer, 2 forgotten (erased; never comes back).
  status smallint NOT NULL DEFAULT 0,
  email text,
  deleted_at timestamptz,
  updated_at timestamptz NOT NULL
);
CREATE TABLE {SCHEMA}.profile_documents (
  customer_id uuid PRIMARY KEY REFERENCES {SCHEMA}.profiles (customer_id) ON DELETE CASCADE,
  attributes jsonb NOT NULL
);

-- Declared fields and the column each one has.
CREATE TABLE {SCHEMA}.fields (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  path text NOT NULL UNIQUE,
  type text NOT NULL,
  sources text[] NOT NULL DEFAULT '{{}}',
  description text NOT NULL DEFAULT '',
  indexed boolean NOT NULL,
  column_name text NOT NULL UNIQUE CHECK (column_name ~ '^f[0-9]+$'),
  -- False until every stored profile's value has been read into the column.
  filled boolean NOT NULL DEFAULT false
);
-- Undeclared fields seen in profiles: every type and source seen.
CREATE TABLE {SCHEMA}.learned_fields (
  path text NOT NULL,
  type text NOT NULL,
  sources text[] NOT NULL DEFAULT '{{}}',
  first_seen_at timestamptz NOT NULL,
  PRIMARY KEY (path, type)
);
-- Bumped by every change to segments or fields, so every replica notices and reloads.
CREATE TABLE {SCHEMA}.catalog_versions (
  name text PRIMARY KEY,
  version bigint NOT NULL
);
INSERT INTO {SCHEMA}.catalog_versions VALUES ('segments', 0), ('fields', 0);

CREATE TABLE {SCHEMA}.segments (
  id uuid PRIMARY KEY,
  name text NOT NULL UNIQUE,
  description text NOT NULL,
  criteria jsonb NOT NULL,
  platforms text[] NOT NULL,
  schedule_kind text NOT NULL,
  schedule_cron text NOT NULL DEFAULT '',
  revision bigint NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  -- The clock instant memberships reflect for withinLast conditions.
  time_evaluated_at timestamptz NOT NULL
);

CREATE TABLE {SCHEMA}.memberships (
  segment_id uuid NOT NULL REFERENCES {SCHEMA}.segments (id) ON DELETE CASCADE,
  customer_id uuid NOT NULL,
  entered_at timestamptz NOT NULL,
  PRIMARY KEY (segment_id, customer_id)
);
CREATE INDEX memberships_customer_idx ON {SCHEMA}.memberships (customer_id);

-- Work staged by segment-wide evaluations inside their own transaction (never kept).
CREATE UNLOGGED TABLE {SCHEMA}.membership_changes (
  run_id uuid NOT NULL,
  customer_id uuid NOT NULL,
  entered boolean NOT NULL
);
CREATE INDEX membership_changes_run_idx ON {SCHEMA}.membership_changes (run_id);

-- The delta each platform has not received yet: at most one row per member, the latest
-- change winning (`seq` tells a row rewritten during a sync from the one that was sent).
CREATE SEQUENCE {SCHEMA}.delta_seq;
CREATE TABLE {SCHEMA}.pending_deltas (
  segment_id uuid NOT NULL REFERENCES {SCHEMA}.segments (id) ON DELETE CASCADE,
  platform text NOT NULL,
  customer_id uuid NOT NULL,
  -- 1 add, 2 remove.
  action smallint NOT NULL CHECK (action IN (1, 2)),
  seq bigint NOT NULL,
  -- A removal because the customer was erased: sent at once, whatever the schedule.
  erasure boolean NOT NULL DEFAULT false,
  PRIMARY KEY (segment_id, platform, customer_id)
);
CREATE INDEX pending_deltas_order_idx
  ON {SCHEMA}.pending_deltas (segment_id, platform, action, seq);
CREATE INDEX pending_deltas_erasure_idx ON {SCHEMA}.pending_deltas (segment_id, platform)
  WHERE erasure;

-- Who each platform's segment holds, as of the last successful sync, with the email sent.
CREATE TABLE {SCHEMA}.platform_members (
  segment_id uuid NOT NULL REFERENCES {SCHEMA}.segments (id) ON DELETE CASCADE,
  platform text NOT NULL,
  customer_id uuid NOT NULL,
  email text NOT NULL,
  synced_at timestamptz NOT NULL,
  PRIMARY KEY (segment_id, platform, customer_id)
);
CREATE INDEX platform_members_email_idx ON {SCHEMA}.platform_members (segment_id, platform, email);

CREATE TABLE {SCHEMA}.sync_states (
  segment_id uuid NOT NULL REFERENCES {SCHEMA}.segments (id) ON DELETE CASCADE,
  platform text NOT NULL,
  next_run_at timestamptz,
  retry_at timestamptz,
  last_attempt_at timestamptz,
  last_success_at timestamptz,
  last_error text NOT NULL DEFAULT '',
  consecutive_failures integer NOT NULL DEFAULT 0,
  PRIMARY KEY (segment_id, platform)
);

-- Every sync attempt, per platform: what was sent and how it ended.
CREATE TABLE {SCHEMA}.sync_runs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  segment_id uuid NOT NULL REFERENCES {SCHEMA}.segments (id) ON DELETE CASCADE,
  platform text NOT NULL,
  started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL,
  full_resync boolean NOT NULL,
  success boolean NOT NULL,
  calls integer NOT NULL,
  added integer NOT NULL,
  removed integer NOT NULL,
  failed integer NOT NULL,
  error text NOT NULL DEFAULT '',
  permanent boolean NOT NULL DEFAULT false
);
CREATE INDEX sync_runs_segment_idx ON {SCHEMA}.sync_runs (segment_id, platform, started_at DESC);
"""

DOWN = f"""
DROP TABLE {SCHEMA}.sync_runs, {SCHEMA}.sync_states, {SCHEMA}.platform_members,
  {SCHEMA}.pending_deltas, {SCHEMA}.membership_changes, {SCHEMA}.memberships,
  {SCHEMA}.segments, {SCHEMA}.catalog_versions, {SCHEMA}.learned_fields, {SCHEMA}.fields,
  {SCHEMA}.profile_documents, {SCHEMA}.profiles;
DROP SEQUENCE {SCHEMA}.delta_seq;
DROP FUNCTION {SCHEMA}.as_number(jsonb), {SCHEMA}.as_text(jsonb), {SCHEMA}.as_bool(jsonb),
  {SCHEMA}.as_time(jsonb);
"""


def _statements(script: str) -> list[str]:
    # One statement per execute: the driver prepares each, and a prepared statement holds
    # one command. No statement above has a semicolon at the end of an inner line.
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";\n") if part.strip()]


def upgrade() -> None:
    for statement in _statements(UP):
        op.execute(statement.rstrip(";"))
    create_bus_tables(op, SCHEMA)


def downgrade() -> None:
    drop_bus_tables(op, SCHEMA)
    for statement in _statements(DOWN):
        op.execute(statement.rstrip(";"))
