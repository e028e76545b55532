-- Offline sync and realtime: the change log.
--
-- One row per document ever written, holding the position of its latest write (a compacted log,
-- like CouchDB's by-sequence index): a client that pulls gets each changed document once, in its
-- latest state, and a client starting from nothing reads the whole collection from the same table.
-- Deletes leave the row behind as a tombstone until housekeeping prunes it (LEVEE_SYNC_TOMBSTONE_DAYS).
--
-- A position is (tx, seq): the id of the writing transaction and a sequence number. Readers order
-- by (tx, seq) and only read rows whose transaction is older than every transaction still running
-- (pg_snapshot_xmin of their snapshot): a transaction that commits later always has a larger id
-- than that horizon, so it can never land behind a cursor already handed out. Sequence order alone
-- would skip: transactions take sequence numbers in one order and commit in another.
CREATE SEQUENCE change_seq;

CREATE TABLE changes (
  collection  text NOT NULL,
  doc_id      uuid NOT NULL,
  owner_id    uuid,
  tx          bigint NOT NULL,
  seq         bigint NOT NULL,
  -- Position of the write that created the document (tells "created" from "updated" since a cursor).
  created_tx  bigint NOT NULL,
  created_seq bigint NOT NULL,
  deleted     boolean NOT NULL DEFAULT false,
  version     integer NOT NULL,
  changed_at  timestamptz NOT NULL,
  PRIMARY KEY (collection, doc_id)
);
CREATE INDEX changes_position ON changes (collection, tx, seq);
CREATE INDEX changes_owner_position ON changes (collection, owner_id, tx, seq);
CREATE INDEX changes_tombstones ON changes (changed_at) WHERE deleted;

-- Positions at or below this were pruned tombstones: a cursor there may have missed a delete.
CREATE TABLE sync_horizon (
  id  boolean PRIMARY KEY DEFAULT true CHECK (id),
  tx  bigint NOT NULL DEFAULT 0,
  seq bigint NOT NULL DEFAULT 0
);
INSERT INTO sync_horizon DEFAULT VALUES;

-- Every document write, whatever the path, records its position in the same transaction.
CREATE FUNCTION levee_log_document_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  t bigint := pg_current_xact_id()::text::bigint;
  s bigint := nextval('change_seq');
BEGIN
  IF TG_OP = 'DELETE' THEN
    UPDATE changes SET tx = t, seq = s, deleted = true, version = OLD.version + 1, changed_at = now()
     WHERE collection = OLD.collection AND doc_id = OLD.id;
    RETURN OLD;
  END IF;
  INSERT INTO changes AS c (collection, doc_id, owner_id, tx, seq, created_tx, created_seq, deleted, version, changed_at)
  VALUES (NEW.collection, NEW.id, NEW.owner_id, t, s, t, s, false, NEW.version, NEW.updated_at)
  ON CONFLICT (collection, doc_id) DO UPDATE
     SET owner_id = EXCLUDED.owner_id, tx = t, seq = s, deleted = false, version = EXCLUDED.version,
         changed_at = EXCLUDED.changed_at,
         created_tx = CASE WHEN c.deleted THEN t ELSE c.created_tx END,
         created_seq = CASE WHEN c.deleted THEN s ELSE c.created_seq END;
  RETURN NEW;
END $$;

CREATE TRIGGER documents_change_log AFTER INSERT OR UPDATE OR DELETE ON documents
  FOR EACH ROW EXECUTE FUNCTION levee_log_document_change();

-- Documents written before this migration enter the log at its position.
INSERT INTO changes (collection, doc_id, owner_id, tx, seq, created_tx, created_seq, version, changed_at)
SELECT collection, id, owner_id, t, s, t, s, version, updated_at
  FROM (SELECT *, pg_current_xact_id()::text::bigint AS t, nextval('change_seq') AS s FROM documents) d;

-- Offline mutations already applied, by client mutation id: a retried batch replays these answers.
CREATE TABLE sync_mutations (
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  mutation_id text NOT NULL,
  result      jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, mutation_id)
);
CREATE INDEX sync_mutations_created_at ON sync_mutations (created_at);

-- A secret that signs sync cursors, made once per database so every instance shares it.
CREATE TABLE server_secrets (
  name       text PRIMARY KEY,
  secret     text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
