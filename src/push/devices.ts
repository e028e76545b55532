import type { Db } from '../db/port.js';
import type { Clock } from '../lib/clock.js';
import { LeveeError } from '../lib/errors.js';
import { newId } from '../lib/ids.js';
import type { Platform, WebPushSubscription } from './providers/port.js';
import { deviceStore, type DeviceRow } from './store.js';

// Device registration: the rules (what a valid token or subscription looks like per platform, which
// topics exist, where a Web Push endpoint may point) in front of the SQL in store.ts.

export interface RegisterDevice {
  platform: Platform;
  token?: string | undefined;
  subscription?: WebPushSubscription | undefined;
  appVersion?: string | undefined;
  locale?: string | undefined;
  topics?: string[] | undefined;
}

export interface PublicDevice {
  id: string;
  platform: Platform;
  appVersion: string | null;
  locale: string | null;
  topics: string[];
  createdAt: string;
  updatedAt: string;
}

export const MAX_TOPICS_PER_DEVICE = 50;
// APNs device tokens are hex (32 bytes today; Apple reserves the right to lengthen them).
const APNS_TOKEN = /^(?:[0-9a-fA-F]{2}){32,100}$/;
// FCM registration tokens: an instance id, `:`, then a long base64url-ish string.
const FCM_TOKEN = /^[A-Za-z0-9_:.-]{32,4096}$/;
const BASE64URL = /^[A-Za-z0-9_-]+={0,2}$/;
const LOCALE = /^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,4}$/;

const invalid = (detail: string) => new LeveeError('invalid_device', detail);

const base64urlBytes = (s: string) => (BASE64URL.test(s) ? Buffer.from(s, 'base64url').length : -1);

export interface DeviceRules {
  topics: readonly string[];
  webPushAllowedHosts: readonly string[];
}

const hostAllowed = (host: string, allowed: readonly string[]) =>
  allowed.some((a) => (a.startsWith('*.') ? host.endsWith(a.slice(1)) && host.length > a.length - 1 : host === a));

/** The token stored for a registration (the endpoint for Web Push), or a 400 saying what is wrong. */
export function checkRegistration(input: RegisterDevice, rules: DeviceRules): { token: string; keys: WebPushSubscription['keys'] | null } {
  const unknown = (input.topics ?? []).filter((t) => !rules.topics.includes(t));
  if (unknown.length) throw new LeveeError('unknown_topic', `Unknown topic${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}${rules.topics.length ? ` (topics: ${rules.topics.join(', ')})` : ' (no topics are configured: LEVEE_PUSH_TOPICS)'}`);
  if (input.locale !== undefined && !LOCALE.test(input.locale)) throw invalid('locale must be a language tag such as en, en-GB or pt_BR');
  switch (input.platform) {
    case 'apns':
      if (input.subscription) throw invalid('An APNs device has a token, not a subscription');
      if (!input.token || !APNS_TOKEN.test(input.token)) throw invalid('An APNs device token is the hex string the app got from registerForRemoteNotifications (64 or more hex digits)');
      return { token: input.token.toLowerCase(), keys: null };
    case 'fcm':
      if (input.subscription) throw invalid('An FCM device has a registration token, not a subscription');
      if (!input.token || !FCM_TOKEN.test(input.token)) throw invalid('An FCM registration token is 32–4096 characters of letters, digits, and _ - : .');
      return { token: input.token, keys: null };
    case 'webpush': {
      if (input.token) throw invalid('A Web Push device has a subscription (endpoint and keys), not a token');
      const sub = input.subscription;
      if (!sub) throw invalid('A Web Push device needs the subscription from PushManager.subscribe()');
      let url: URL;
      try {
        url = new URL(sub.endpoint);
      } catch {
        throw invalid('subscription.endpoint is not a URL');
      }
      if (url.protocol !== 'https:') throw invalid('subscription.endpoint must be https');
      if (!hostAllowed(url.hostname, rules.webPushAllowedHosts)) throw invalid(`subscription.endpoint must be a push service (${rules.webPushAllowedHosts.join(', ')}), not ${url.hostname}`);
      if (base64urlBytes(sub.keys.p256dh) !== 65 || Buffer.from(sub.keys.p256dh, 'base64url')[0] !== 4) throw invalid('subscription.keys.p256dh must be an uncompressed P-256 public key (65 bytes, base64url)');
      if (base64urlBytes(sub.keys.auth) !== 16) throw invalid('subscription.keys.auth must be 16 bytes, base64url');
      return { token: sub.endpoint, keys: sub.keys };
    }
  }
}

const toPublic = (d: DeviceRow): PublicDevice => ({
  id: d.id,
  platform: d.platform,
  appVersion: d.app_version,
  locale: d.locale,
  topics: d.topics,
  createdAt: d.created_at.toISOString(),
  updatedAt: d.updated_at.toISOString(),
});

export function createDeviceService(deps: { db: Db; clock: Clock; rules: DeviceRules }) {
  return {
    /** Same token → same device, updated (and now the caller's). */
    async register(userId: string, input: RegisterDevice): Promise<{ device: PublicDevice; created: boolean }> {
      const { token, keys } = checkRegistration(input, deps.rules);
      const row = await deviceStore.upsert(deps.db, {
        id: newId(),
        userId,
        platform: input.platform,
        token,
        keys,
        appVersion: input.appVersion ?? null,
        locale: input.locale ?? null,
        topics: [...new Set(input.topics ?? [])],
        now: deps.clock.now(),
      });
      return { device: toPublic(row), created: row.inserted };
    },
    list: async (userId: string) => (await deviceStore.byUser(deps.db, userId)).map(toPublic),
    async unregister(userId: string, id: string) {
      if (!(await deviceStore.remove(deps.db, userId, id))) throw new LeveeError('device_not_found');
    },
  };
}

export type DeviceService = ReturnType<typeof createDeviceService>;
