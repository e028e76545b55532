-- Accounts: users, their external identities (Apple, Google), device sessions and refresh tokens.
CREATE TABLE users (
  id            uuid PRIMARY KEY,
  email         text,
  password_hash text,
  is_anonymous  boolean NOT NULL DEFAULT false,
  role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE identities (
  provider   text NOT NULL,
  subject    text NOT NULL,
  user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  email      text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider, subject)
);
CREATE INDEX identities_user_id ON identities (user_id);

-- One row per signed-in device. Revoking a session revokes its whole refresh-token family.
CREATE TABLE sessions (
  id             uuid PRIMARY KEY,
  user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  device_name    text,
  user_agent     text,
  ip             text,
  created_at     timestamptz NOT NULL DEFAULT now(),
  last_used_at   timestamptz NOT NULL DEFAULT now(),
  expires_at     timestamptz NOT NULL,
  revoked_at     timestamptz,
  revoked_reason text
);
CREATE INDEX sessions_user_id ON sessions (user_id) WHERE revoked_at IS NULL;

-- Every refresh token ever issued for a session, hashed. A token with used_at set that is
-- presented again is a reuse: the session is revoked.
CREATE TABLE refresh_tokens (
  token_hash text PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  used_at    timestamptz
);
CREATE INDEX refresh_tokens_session_id ON refresh_tokens (session_id);

-- Access-token signing keys. The newest non-retired key signs; every key not yet past
-- retire_after is published in the JWKS so tokens it signed stay valid through a rotation.
CREATE TABLE signing_keys (
  kid          text PRIMARY KEY,
  alg          text NOT NULL,
  private_jwk  jsonb NOT NULL,
  public_jwk   jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  retired_at   timestamptz
);

-- Documents of every declared collection. Declared indexes are partial indexes per collection,
-- created from the configuration at start-up (see src/data/indexes.ts).
CREATE TABLE documents (
  collection text NOT NULL,
  id         uuid NOT NULL,
  owner_id   uuid REFERENCES users (id) ON DELETE SET NULL,
  data       jsonb NOT NULL,
  version    integer NOT NULL DEFAULT 1,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (collection, id)
);
CREATE INDEX documents_owner ON documents (collection, owner_id, created_at, id);
CREATE INDEX documents_created ON documents (collection, created_at, id);

-- Stored first responses for Idempotency-Key replays, kept 24 h.
CREATE TABLE idempotency_keys (
  scope       text NOT NULL,
  key         text NOT NULL,
  fingerprint text NOT NULL,
  status      integer NOT NULL,
  headers     jsonb NOT NULL DEFAULT '{}',
  body        jsonb,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
