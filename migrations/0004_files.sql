-- Media: one row per uploaded file. Its bytes live in object storage (the local directory or S3);
-- this row says whose it is, what it is and whether it may be served.
--
-- state: uploading  → the row exists (quota reserved), bytes are arriving through tus;
--        processing → bytes verified and stored, image variants being made by a job;
--        ready      → servable;
--        failed     → refused (type mismatch, bad image, …): never served, frees its quota.
-- key is the original's content-addressed storage key (<bucket>/<id>/original-<sha256>.<ext>), set
-- once the bytes are verified; variants maps a variant name to its own key, size, sha256, size in pixels.
CREATE TABLE files (
  id             uuid PRIMARY KEY,
  owner_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  bucket         text NOT NULL,
  key            text,
  content_type   text NOT NULL,
  size           bigint NOT NULL CHECK (size >= 0),
  sha256         text,
  state          text NOT NULL DEFAULT 'uploading' CHECK (state IN ('uploading', 'processing', 'ready', 'failed')),
  failure_reason text,
  visibility     text NOT NULL CHECK (visibility IN ('public', 'private')),
  variants       jsonb NOT NULL DEFAULT '{}',
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
-- Listing a user's files, and summing their quota (failed files do not count).
CREATE INDEX files_owner ON files (owner_id, created_at) INCLUDE (size) WHERE state <> 'failed';
-- Housekeeping: uploads abandoned mid-way, failed rows to purge.
CREATE INDEX files_stale ON files (updated_at) WHERE state IN ('uploading', 'failed');
