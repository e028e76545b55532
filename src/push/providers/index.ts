// The push providers behind the port in port.ts; the push role builds the ones it has credentials for.
export { createApnsProvider, type ApnsOptions } from './apns.js';
export { createFcmProvider, type FcmOptions, type FcmServiceAccount } from './fcm.js';
export { createWebPushProvider, type WebPushOptions } from './webpush.js';
export type * from './port.js';
