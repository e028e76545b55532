import { readFileSync } from 'node:fs';
import type { Config } from '../config/load.js';
import { LeveeStartupError } from '../lib/startup-error.js';
import type { CreateDependency } from '../protection/dependency.js';
import { guardProvider } from './guard.js';
import { createApnsProvider } from './providers/apns.js';
import { createFcmProvider, type FcmServiceAccount } from './providers/fcm.js';
import type { Platform, PushProvider } from './providers/port.js';
import { createWebPushProvider } from './providers/webpush.js';

// The push role's providers, from configuration: each one whose credentials are all set, behind its
// own bulkhead, breaker and rate limit (guard.ts). A provider with part of its settings, or a key
// file that cannot be read, stops start-up with one line naming the setting.

const read = (setting: string, path: string) => {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new LeveeStartupError(`${setting}: cannot read ${path}: ${(e as Error).message}`);
  }
};

/** All of a provider's settings, none of them, or a start-up error naming the missing ones. */
function allOrNone(provider: string, settings: Record<string, string | undefined>): boolean {
  const missing = Object.entries(settings).filter(([, v]) => !v).map(([k]) => k);
  if (missing.length === 0) return true;
  if (missing.length === Object.keys(settings).length) return false;
  throw new LeveeStartupError(`${provider} is partly configured: set ${missing.join(', ')} too (or none of its settings)`);
}

export function composeProviders(config: Config, dependency: CreateDependency): Partial<Record<Platform, PushProvider>> {
  const ca = config.pushCaFile ? read('LEVEE_PUSH_CA_FILE', config.pushCaFile) : undefined;
  const providers: Partial<Record<Platform, PushProvider>> = {};
  const built: PushProvider[] = [];
  try {
    if (allOrNone('APNs', { LEVEE_APNS_KEY_FILE: config.apnsKeyFile, LEVEE_APNS_KEY_ID: config.apnsKeyId, LEVEE_APNS_TEAM_ID: config.apnsTeamId, LEVEE_APNS_BUNDLE_ID: config.apnsBundleId })) {
      const p = createApnsProvider({ teamId: config.apnsTeamId!, keyId: config.apnsKeyId!, privateKey: read('LEVEE_APNS_KEY_FILE', config.apnsKeyFile!), bundleId: config.apnsBundleId!, baseUrl: config.apnsUrl, ...(ca ? { ca } : {}) });
      built.push(p);
      providers.apns = p;
    }
    if (config.fcmServiceAccountFile) {
      let account: FcmServiceAccount;
      try {
        account = JSON.parse(read('LEVEE_FCM_SERVICE_ACCOUNT_FILE', config.fcmServiceAccountFile)) as FcmServiceAccount;
      } catch (e) {
        throw e instanceof LeveeStartupError ? e : new LeveeStartupError(`LEVEE_FCM_SERVICE_ACCOUNT_FILE: ${config.fcmServiceAccountFile} is not JSON`);
      }
      const missing = (['client_email', 'private_key', 'project_id', 'token_uri'] as const).filter((k) => typeof account[k] !== 'string' || !account[k]);
      if (missing.length) throw new LeveeStartupError(`LEVEE_FCM_SERVICE_ACCOUNT_FILE: ${config.fcmServiceAccountFile} lacks ${missing.join(', ')} (is it a service-account key?)`);
      const p = createFcmProvider({ serviceAccount: account, baseUrl: config.fcmUrl, ...(ca ? { ca } : {}) });
      built.push(p);
      providers.fcm = p;
    }
    if (allOrNone('Web Push', { LEVEE_VAPID_PUBLIC_KEY: config.vapidPublicKey, LEVEE_VAPID_PRIVATE_KEY: config.vapidPrivateKey, LEVEE_VAPID_SUBJECT: config.vapidSubject })) {
      const p = createWebPushProvider({ vapid: { subject: config.vapidSubject!, publicKey: config.vapidPublicKey!, privateKey: config.vapidPrivateKey! }, ...(ca ? { ca } : {}) });
      built.push(p);
      providers.webpush = p;
    }
  } catch (e) {
    for (const p of built) void p.close();
    if (e instanceof LeveeStartupError) throw e;
    throw new LeveeStartupError(`push provider settings: ${(e as Error).message}`);
  }
  // Each behind its own bulkhead, breaker and rate limit.
  return Object.fromEntries(
    Object.entries(providers).map(([platform, provider]) => [
      platform,
      guardProvider(provider, {
        dependency: dependency({
          name: `push_${platform}`,
          concurrency: config.pushProviderConcurrency,
          queue: config.pushProviderConcurrency * 4,
          failuresToOpen: 20,
          halfOpenAfterMs: 5_000,
          unavailable: (why) => new Error(`${platform} ${why === 'open' ? 'circuit open' : 'busy'}`),
        }),
        perSecond: config.pushProviderRatePerSecond,
        openRetryMs: 5_000,
      }),
    ]),
  );
}
