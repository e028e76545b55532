import type { Readable } from 'node:stream';
import type { DataStore } from '@tus/server';

// The object storage port: bytes under keys, on a local directory or an S3-compatible bucket.
//
// Contract (test/files/storage.contract.test.ts runs it against every adapter):
// - Keys are made by Levee (ids and hashes, see keys.ts), never taken from user file names; an
//   unsafe key (`..`, absolute, odd characters) is refused with an Error before any I/O.
// - `put` is all or nothing: a reader sees the previous object or the new one, never a partial one.
//   A put that fails (its size or sha256 check, an abort) leaves the previous object (local) or no
//   object (S3: some S3-compatible servers keep fragments, so the key is deleted). Overwriting a
//   key replaces it; Levee's keys are unique per content, so overwrites are rare.
// - A missing key is LeveeError('file_not_found') from `get` and `head`; `delete` of a missing key
//   succeeds (idempotent); `exists` answers false.
// - The storage being slow or down is LeveeError('storage_unavailable'). Every call is bounded:
//   by the `signal` passed, the current request's deadline, and the adapter's own timeouts
//   (metadata calls and the start of a `get`: `requestTimeoutMs`; a `put` or `copy`: `transferTimeoutMs`).
//   A `get`'s body stream is the caller's to consume or destroy; its pace is the reader's.
// - The adapter owns its connections; `close()` releases them.

export interface ObjectInfo {
  key: string;
  size: number;
  /** Changes whenever the bytes change. Quoted, as in an HTTP ETag. */
  etag: string;
  contentType: string;
}

export interface CallOptions {
  signal?: AbortSignal | undefined;
}

export interface PutOptions extends CallOptions {
  contentType: string;
  /** The exact byte count; a body of another length fails (and nothing is stored). Required for streams. */
  size?: number | undefined;
  /** Lower-case hex SHA-256 the bytes must have, else LeveeError('checksum_mismatch'). */
  sha256?: string | undefined;
}

export interface PutResult extends ObjectInfo {
  /** Lower-case hex SHA-256 of the bytes written (computed while streaming). */
  sha256: string;
}

/** Inclusive byte range, as in HTTP `Range: bytes=start-end`; `end` omitted: to the last byte. */
export interface ByteRange {
  start: number;
  end?: number | undefined;
}

export interface GetOptions extends CallOptions {
  range?: ByteRange | undefined;
}

export interface GetResult extends ObjectInfo {
  body: Readable;
  /** The bytes actually returned (inclusive); absent when the whole object is returned. */
  range?: { start: number; end: number } | undefined;
}

/** Where tus writes resumable uploads, in the same storage as the finished objects. */
export interface UploadStaging {
  /** The tus DataStore for `@tus/server` (FileStore for local, S3Store for S3). */
  readonly dataStore: DataStore;
  /** The key under which a finished upload's bytes can be read with `get`, `head` and `copy`. */
  key(uploadId: string): string;
  /** Deletes everything tus kept for an upload (bytes and its metadata); idempotent. */
  discard(uploadId: string, opts?: CallOptions): Promise<void>;
}

export interface ObjectStorage {
  readonly engine: 'local' | 's3';
  put(key: string, body: Readable | Uint8Array, opts: PutOptions): Promise<PutResult>;
  get(key: string, opts?: GetOptions): Promise<GetResult>;
  head(key: string, opts?: CallOptions): Promise<ObjectInfo>;
  exists(key: string, opts?: CallOptions): Promise<boolean>;
  delete(key: string, opts?: CallOptions): Promise<void>;
  /** Copies an object to another key (server-side on S3, a hard link or copy locally). */
  copy(from: string, to: string, opts?: CallOptions & { contentType?: string }): Promise<ObjectInfo>;
  /**
   * A URL that GETs the object directly from the storage for `ttlSeconds`, with the given
   * response headers. Only where the engine can sign one (S3); the local adapter has none.
   */
  presignedGetUrl?(key: string, opts: { ttlSeconds: number; cacheControl?: string; contentDisposition?: string; contentType?: string }): Promise<string>;
  readonly uploads: UploadStaging;
  close(): Promise<void>;
}
