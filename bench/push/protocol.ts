// What the push benchmark's processes share: the device tokens (the SQL seed and the mock process
// derive the same ones from a device's index), and the messages between the orchestrator (main.ts)
// and the mock-provider process (mock-process.ts).

/** A fixed 140-character tail, so that FCM tokens have about the length of real ones (~160). */
export const FCM_FILLER = 'APA91b' + 'x7Kq2Zp9Lm4Rt8Vw1Yc6Nd3Hf5Gj0Bs'.repeat(5).slice(0, 134);

/** Even indexes are APNs devices, odd ones FCM: the audience is half and half, interleaved. */
export const platformOf = (i: number): 'apns' | 'fcm' => (i % 2 === 0 ? 'apns' : 'fcm');
/** 64 hex digits, like today's APNs device tokens. Matches the SQL `lpad(to_hex(i), 64, '0')`. */
export const apnsToken = (i: number): string => i.toString(16).padStart(64, '0');
/** Matches the SQL `'bench' || i || ':' || filler`. */
export const fcmToken = (i: number): string => `bench${i}:${FCM_FILLER}`;
export const tokenOf = (i: number): string => (platformOf(i) === 'apns' ? apnsToken(i) : fcmToken(i));

/** Tokens the ceiling flood uses: disjoint from the seeded ones (APNs: starting with f; FCM: "flood"). */
export const floodApnsToken = (i: number): string => `f${i.toString(16).padStart(63, '0')}`;
export const floodFcmToken = (i: number): string => `flood${i}:${FCM_FILLER}`;

export const TEAM = { teamId: 'BENCHTEAM1', keyId: 'BENCHKEY01', bundleId: 'dev.levee.bench' } as const;

export interface MockReady {
  type: 'ready';
  pid: number;
  apnsUrl: string;
  fcmUrl: string;
  tokenUrl: string;
  /** PEM of the mocks' self-signed certificate (Levee's LEVEE_PUSH_CA_FILE). */
  ca: string;
  /** The FCM service-account key file (JSON), with its private key. */
  serviceAccount: Record<string, string>;
  /** The APNs team key: its private half for Levee's .p8 file, its public half for the record. */
  teamPrivateKey: string;
  teamPublicKey: string;
  apnsMaxConcurrentStreams: number;
}

export interface ProviderCounts {
  /** Requests that reached the mock, whatever the answer. */
  requests: number;
  /** Accepted (200) notifications. */
  delivered: number;
  /** Distinct tokens with at least one accepted notification. */
  tokens: number;
  connections: number;
}

export interface MockReport {
  type: 'report';
  label: string;
  apns: ProviderCounts & { peakStreams: number };
  fcm: ProviderCounts & { tokenFetches: number };
  /** Of the expected devices (0 … n-1): without any accepted notification. */
  lost: number;
  /** Of the expected devices: with more than one accepted notification, and the extra copies. */
  duplicated: number;
  extraCopies: number;
  /** Accepted notifications to tokens that are not among the expected ones. */
  unexpected: number;
  /** Date.now() of the first and last accepted notification since `expect` (0: none). */
  firstAt: number;
  lastAt: number;
  /** A few lost tokens, for the error report. */
  lostSample: string[];
}

export type ToMock =
  /** Forget what was delivered; from now on count towards `n` expected devices (0: none expected). */
  | { type: 'expect'; label: string; n: number }
  | { type: 'report' }
  | { type: 'exit' };

export type FromMock = MockReady | MockReport | { type: 'reached'; label: string; at: number; delivered: number } | { type: 'error'; message: string };
