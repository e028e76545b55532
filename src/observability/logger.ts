import { pino, type Logger } from 'pino';

// Structured JSON logs. Secrets never reach them: request logs carry no headers or bodies, and
// these paths are redacted wherever an object is logged.
export const REDACT = [
  'req.headers.authorization',
  'req.headers.cookie',
  '*.password',
  '*.currentPassword',
  '*.newPassword',
  '*.refreshToken',
  '*.accessToken',
  '*.idToken',
  '*.token',
  'password',
  'refreshToken',
  'accessToken',
];

export const createLogger = (level: string, destination?: NodeJS.WritableStream): Logger =>
  pino({ level, redact: { paths: REDACT, censor: '[redacted]' }, base: { pid: process.pid } }, destination as pino.DestinationStream | undefined);
