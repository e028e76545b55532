import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { LeveeStartupError } from '../lib/startup-error.js';
import { parseCollections, type CollectionConfig } from './collections.js';
import { isBadValue, SETTINGS, type Settings } from './settings.js';

export interface Config extends Settings {
  /** Resolved path of the config file that was read, if any. */
  configFile: string | undefined;
  collections: Map<string, CollectionConfig>;
}

type Env = Record<string, string | undefined>;

/**
 * Builds the configuration: defaults ← config file (settings by their camelCase key) ← environment
 * ← command-line flags (raw strings, e.g. `--roles`). `overrides` are already-parsed values (tests).
 * Collects every problem and throws one LeveeStartupError with one line per bad setting.
 */
export function loadConfig(env: Env = process.env, overrides: Partial<Settings> = {}, flags: Partial<Record<keyof Settings, string>> = {}): Config {
  const errors: string[] = [];
  const configPath = env.LEVEE_CONFIG ?? './levee.config.json';
  let file: Record<string, unknown> = {};
  let configFile: string | undefined;
  if (existsSync(configPath)) {
    configFile = resolve(configPath);
    try {
      const parsed: unknown = JSON.parse(readFileSync(configPath, 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('the top level must be a JSON object');
      file = parsed as Record<string, unknown>;
    } catch (e) {
      errors.push(`LEVEE_CONFIG: ${configPath} is not valid: ${(e as Error).message}`);
    }
  } else if (env.LEVEE_CONFIG !== undefined) {
    errors.push(`LEVEE_CONFIG: ${configPath} does not exist`);
  }

  const known = new Set([...Object.keys(SETTINGS), 'collections', '$schema']);
  for (const k of Object.keys(file)) if (!known.has(k)) errors.push(`${configPath}: unknown key "${k}"`);

  const settings: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(SETTINGS)) {
    const fromFlag = flags[key as keyof Settings];
    const fromEnv = env[s.env] === '' ? undefined : env[s.env];
    const raw = fromFlag ?? fromEnv ?? file[key];
    const source = fromFlag !== undefined ? `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` : fromEnv !== undefined ? s.env : `${s.env} (${configPath}: ${key})`;
    if (key in overrides) {
      settings[key] = (overrides as Record<string, unknown>)[key];
    } else if (raw === undefined) {
      settings[key] = s.default;
    } else {
      try {
        settings[key] = s.parse(raw);
      } catch (e) {
        if (!isBadValue(e)) throw e;
        errors.push(`${source} ${e.message}`);
      }
    }
  }

  let collections = new Map<string, CollectionConfig>();
  try {
    collections = parseCollections(file.collections);
  } catch (e) {
    if (!isBadValue(e)) throw e;
    for (const line of e.message.split('\n')) errors.push(`LEVEE_CONFIG: ${configPath}: ${line.startsWith('collections') ? '' : 'collections '}${line}`);
  }

  if (errors.length > 0) throw new LeveeStartupError(errors.join('\n'));
  return { ...(settings as Settings), configFile, collections };
}
