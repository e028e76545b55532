import { execFile, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './process.js';

// A throwaway PostgreSQL cluster that a test owns and may stop and start (an outage on demand),
// unlike the shared server on 5432. initdb + pg_ctl from /usr/lib/postgresql/<newest>/bin (or
// LEVEE_TEST_PG_BINDIR), in a fresh temp directory: trust auth, 127.0.0.1 on a free port only, its
// unix socket inside that directory, small and unsynced (fsync=off) for speed. initdb refuses to
// run as root, so as root every command runs as the `postgres` user through runuser. Every wait
// has a deadline; destroy() (and, as a last resort, process exit) stops the server and removes the
// directory, so a failing test leaks neither.
//
// freeze()/thaw() stand for a server that hangs rather than goes away (a stalled disk, a VM paused
// by its host, a kernel stuck on memory): SIGSTOP to the postmaster and every child process, later
// SIGCONT. Sockets stay open and the kernel still accepts connections into the listen backlog, but
// nothing answers. A frozen cluster is thawed before it is stopped, by destroy() and at exit too.

export interface PgCluster {
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  url: string;
  port: number;
  /** The cluster's directory (data/, server.log, the unix socket). */
  dir: string;
  /** `pg_ctl stop -m <mode>`, resolved once the server is gone. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** `pg_ctl start`, resolved once the server accepts connections (a `SELECT 1` succeeded). */
  start(): Promise<void>;
  /** SIGSTOP to the postmaster and all its children (backends, background processes); returns their pids. */
  freeze(): Promise<number[]>;
  /** SIGCONT to every process freeze() stopped. Safe to call when not frozen. */
  thaw(): void;
  /** Stops the server if it runs and removes the directory. Safe to call more than once. */
  destroy(): Promise<void>;
  /** The end of the server log, for failure messages. */
  log(lines?: number): string;
}

const START_TIMEOUT_S = 20;
const STOP_TIMEOUT_S = 20;

/** The newest /usr/lib/postgresql/<version>/bin holding initdb, or LEVEE_TEST_PG_BINDIR. */
export function findPgBinDir(): string | undefined {
  const explicit = process.env.LEVEE_TEST_PG_BINDIR;
  if (explicit) return existsSync(join(explicit, 'initdb')) ? explicit : undefined;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(join(root, v, 'bin', 'initdb')) && existsSync(join(root, v, 'bin', 'pg_ctl')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

const isRoot = () => process.getuid?.() === 0;

function userIds(name: string): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8', timeout: 5_000 }).trim());
    const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8', timeout: 5_000 }).trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

/** Why a throwaway cluster cannot be made here (for `describe(…, { skip })`), or false. */
export function pgClusterUnavailable(): string | false {
  const bin = findPgBinDir();
  if (!bin) return 'no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/<version>/bin; set LEVEE_TEST_PG_BINDIR';
  if (isRoot()) {
    if (!userIds('postgres')) return 'running as root, and initdb refuses root, but there is no `postgres` user to run it as';
    if (!existsSync('/usr/sbin/runuser') && !existsSync('/sbin/runuser') && !existsSync('/usr/bin/runuser')) return 'running as root and runuser is missing';
  }
  return false;
}

/** Runs a PostgreSQL program (as `postgres` when we are root) and rejects on a non-zero exit or after `timeoutMs`. */
function run(bin: string, program: string, args: string[], timeoutMs: number): Promise<string> {
  const [cmd, argv] = isRoot() ? ['runuser', ['-u', 'postgres', '--', join(bin, program), ...args]] : [join(bin, program), args];
  return new Promise((resolve, reject) => {
    // stdin ignored; pg_ctl start hands the server its own log file, so our pipes close with pg_ctl.
    const child = spawn(cmd as string, argv as string[], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${program} ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    // 'exit', not 'close': a server started by pg_ctl must not hold us up through an inherited pipe.
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${program} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${out}`));
    });
  });
}

/** Polls `SELECT 1` until it succeeds; rejects after `timeoutMs` with the last error. */
async function waitAccepting(url: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000, query_timeout: 1_000 });
    c.on('error', () => {});
    try {
      await c.connect();
      await c.query('SELECT 1');
      return;
    } catch (e) {
      last = e;
    } finally {
      await c.end().catch(() => {});
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`PostgreSQL at ${url} did not accept connections within ${timeoutMs} ms: ${(last as Error | undefined)?.message}`);
}

/** The postmaster's pid: the first line of <data>/postmaster.pid. */
function postmasterPid(data: string): number {
  const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no postmaster pid in ${join(data, 'postmaster.pid')}`);
  return pid;
}

/** The direct children of `pid` (pgrep -P, asynchronously: a load generator may share this event loop). */
function childPids(pid: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    execFile('pgrep', ['-P', String(pid)], { encoding: 'utf8', timeout: 5_000 }, (err, stdout) => {
      // Exit status 1: no process matched.
      if (err && err.code !== 1) reject(err);
      else resolve(stdout.split('\n').filter(Boolean).map(Number));
    });
  });
}

/** SIGCONT to each pid, children before the postmaster (the first); gone processes are skipped. */
function cont(pids: number[]) {
  for (const pid of [...pids].reverse()) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // already gone
    }
  }
}

const live = new Set<PgCluster>();
const liveDirs = new Map<string, { bin: string; data: string; frozen: number[] }>();

process.once('exit', () => {
  // A last resort for a suite that did not await destroy(): no server and no directory outlive us.
  for (const [dir, { bin, data, frozen }] of liveDirs) {
    cont(frozen); // a stopped postmaster would hold pg_ctl stop until its timeout
    try {
      if (existsSync(join(data, 'postmaster.pid'))) {
        const [cmd, argv] = isRoot() ? ['runuser', ['-u', 'postgres', '--', join(bin, 'pg_ctl'), '-D', data, '-m', 'immediate', '-w', '-t', '10', 'stop']] : [join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', '-t', '10', 'stop']];
        execFileSync(cmd as string, argv as string[], { stdio: 'ignore', timeout: 15_000 });
      }
    } catch {
      // best effort
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Destroys every cluster this process created and has not destroyed yet: `after(destroyAllClusters)`. */
export async function destroyAllClusters(): Promise<void> {
  await Promise.all([...live].map((c) => c.destroy()));
}

/** initdb + start a fresh cluster; resolves once it accepts connections. */
export async function createCluster(opts: { sharedBuffers?: string; maxConnections?: number } = {}): Promise<PgCluster> {
  const bin = findPgBinDir();
  const unavailable = pgClusterUnavailable();
  if (!bin || unavailable) throw new Error(`cannot create a PostgreSQL cluster: ${unavailable || 'no binaries'}`);
  // As root, somewhere the postgres user can reach: TMPDIR may point into root's home.
  const dir = mkdtempSync(join(isRoot() ? '/tmp' : tmpdir(), 'levee-pg-'));
  const data = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  const state = { bin, data, frozen: [] as number[] };
  liveDirs.set(dir, state);
  if (isRoot()) {
    const ids = userIds('postgres')!;
    chownSync(dir, ids.uid, ids.gid);
  }
  let running = false;
  let destroyed: Promise<void> | undefined;
  const port = await freePort();
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const serverOptions = [
    `-c listen_addresses=127.0.0.1`,
    `-c port=${port}`,
    `-c unix_socket_directories=${dir}`,
    `-c shared_buffers=${opts.sharedBuffers ?? '16MB'}`,
    `-c max_connections=${opts.maxConnections ?? 40}`,
    // fsync=off loses data only when the machine crashes, not when the server is killed (the WAL is
    // still written before a commit is acknowledged), so `stop('immediate')` keeps every
    // acknowledged commit — synchronous_commit=off would not, and is deliberately left on.
    '-c fsync=off',
  ].join(' ');

  const cluster: PgCluster = {
    url,
    port,
    dir,
    async start() {
      if (destroyed) throw new Error('cluster destroyed');
      await run(bin, 'pg_ctl', ['-D', data, '-l', logFile, '-o', serverOptions, '-w', '-t', String(START_TIMEOUT_S), 'start'], (START_TIMEOUT_S + 5) * 1_000);
      running = true;
      await waitAccepting(url, 10_000);
    },
    async freeze() {
      if (state.frozen.length > 0) throw new Error('cluster already frozen');
      const postmaster = postmasterPid(data);
      const stop = (pids: number[]) => {
        for (const pid of pids) {
          try {
            process.kill(pid, 'SIGSTOP');
            state.frozen.push(pid);
          } catch {
            // exited meanwhile
          }
        }
      };
      // The children known now and the postmaster stop together (no await between them), so the
      // server does not go on answering on some connections while it freezes.
      const known = await childPids(postmaster);
      stop([postmaster, ...known]);
      if (state.frozen[0] !== postmaster) throw new Error(`could not stop the postmaster (pid ${postmaster})`);
      // A stopped postmaster forks no more children, but one forked after the listing above is
      // not stopped yet: repeat until a pass finds no new child.
      for (let pass = 0; pass < 10; pass++) {
        const fresh = (await childPids(postmaster)).filter((p) => !state.frozen.includes(p));
        if (fresh.length === 0) break;
        stop(fresh);
      }
      return [...state.frozen];
    },
    thaw() {
      cont(state.frozen);
      state.frozen = [];
    },
    async stop(mode = 'fast') {
      cluster.thaw();
      await run(bin, 'pg_ctl', ['-D', data, '-m', mode, '-w', '-t', String(STOP_TIMEOUT_S), 'stop'], (STOP_TIMEOUT_S + 5) * 1_000);
      running = false;
    },
    destroy() {
      destroyed ??= (async () => {
        try {
          if (running || existsSync(join(data, 'postmaster.pid'))) await cluster.stop('immediate').catch(() => {});
        } finally {
          rmSync(dir, { recursive: true, force: true });
          liveDirs.delete(dir);
          live.delete(cluster);
        }
      })();
      return destroyed;
    },
    log(lines = 40) {
      try {
        return readFileSync(logFile, 'utf8').split('\n').slice(-lines).join('\n');
      } catch {
        return '(no server log)';
      }
    },
  };
  live.add(cluster);
  try {
    await run(bin, 'initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '--encoding=UTF8', '--locale=C'], 60_000);
    await cluster.start();
  } catch (e) {
    const log = cluster.log();
    await cluster.destroy();
    throw new Error(`${(e as Error).message}\n--- server log ---\n${log}`);
  }
  return cluster;
}
