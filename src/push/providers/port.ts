// The push provider port: one notification to one device through APNs, FCM or Web Push.
// Providers speak the real protocols (HTTP/2 for APNs and FCM, Web Push over HTTPS) to configurable
// hosts; the push role calls them through a per-provider bulkhead, rate limit and breaker.

export type Platform = 'apns' | 'fcm' | 'webpush';

export interface WebPushSubscription {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

/** Where a notification goes. `token` is the APNs device token (hex) or the FCM registration token. */
export type PushTarget =
  | { platform: 'apns'; token: string }
  | { platform: 'fcm'; token: string }
  | { platform: 'webpush'; subscription: WebPushSubscription };

export interface PushMessage {
  title?: string;
  body?: string;
  /** Custom key/values delivered to the app. */
  data?: Record<string, string>;
  /** Notifications with the same collapse id replace each other on the device. */
  collapseId?: string;
  /** Past this instant the provider should drop the notification instead of delivering it late. */
  expiresAt?: Date;
  priority: 'high' | 'normal';
  badge?: number;
  sound?: string;
}

/**
 * What happened, in the push role's terms:
 * - `sent`: the provider accepted it;
 * - `invalid_token`: the device is gone or the token was never valid — prune the device;
 * - `retry`: try again later (429, 5xx, a connection failure), not before `retryAfterMs` if given;
 * - `rejected`: this message can never be sent as it is (payload too large, bad request) — do not retry.
 */
export type SendResult =
  | { outcome: 'sent'; id?: string }
  | { outcome: 'invalid_token'; reason: string }
  | { outcome: 'retry'; reason: string; retryAfterMs?: number }
  | { outcome: 'rejected'; reason: string };

export interface PushProvider {
  readonly platform: Platform;
  send(target: PushTarget, message: PushMessage, signal?: AbortSignal): Promise<SendResult>;
  /** While the provider cannot take sends at all (its circuit is open): how long to wait, else undefined. */
  unavailableFor?(): number | undefined;
  close(): Promise<void>;
}
