-- Devices that receive push notifications: an APNs device token, an FCM registration token or a
-- Web Push subscription (its endpoint is the token; its keys encrypt the payload). One row per
-- token: registering the same token again updates it — and moves it to whoever registered it last
-- (the app on that phone is now signed in as them).
CREATE TABLE devices (
  id           uuid PRIMARY KEY,
  user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  platform     text NOT NULL CHECK (platform IN ('apns', 'fcm', 'webpush')),
  token        text NOT NULL,
  webpush_keys jsonb,
  app_version  text,
  locale       text,
  topics       text[] NOT NULL DEFAULT '{}',
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (platform, token)
);
CREATE INDEX devices_user_id ON devices (user_id);
CREATE INDEX devices_topics ON devices USING gin (topics);

-- A push: its audience and message, and live progress. Fan-out walks the audience by device id
-- (fanout_cursor) so a restarted fan-out resumes where it stopped.
CREATE TABLE pushes (
  id            uuid PRIMARY KEY,
  created_by    text NOT NULL,
  audience      jsonb NOT NULL,
  message       jsonb NOT NULL,
  send_at       timestamptz NOT NULL,
  expires_at    timestamptz,
  state         text NOT NULL DEFAULT 'scheduled' CHECK (state IN ('scheduled', 'fanning_out', 'sending', 'done')),
  fanout_cursor uuid,
  targeted      integer NOT NULL DEFAULT 0,
  sent          integer NOT NULL DEFAULT 0,
  failed        integer NOT NULL DEFAULT 0,
  pruned        integer NOT NULL DEFAULT 0,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per push and device: the dedupe key. A delivery is claimed (`sending`) before the
-- provider is called, so a retried or re-run batch never sends it twice.
CREATE TABLE push_deliveries (
  push_id    uuid NOT NULL REFERENCES pushes (id) ON DELETE CASCADE,
  device_id  uuid NOT NULL,
  platform   text NOT NULL,
  state      text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'retry', 'sent', 'failed', 'pruned')),
  attempts   integer NOT NULL DEFAULT 0,
  reason     text,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (push_id, device_id)
);
