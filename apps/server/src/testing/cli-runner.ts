import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { TEST_MASTER_KEY, type TestApp } from './test-app.ts';

const run = promisify(execFile);
export const ROOT = path.resolve(import.meta.dirname, '../../../..');
const BIN = path.join(ROOT, 'bin/steward.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The real CLI (`node bin/steward.js`, one process per call) against a test app's database and
 * data directory. Resolves with the exit code instead of rejecting on failure.
 */
export function cliFor(t: TestApp): (...args: string[]) => Promise<CliResult> {
  return async (...args) => {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: t.db.ownerUrl,
      STEWARD_DATA_DIR: t.config.dataDir,
      STEWARD_MASTER_KEY: TEST_MASTER_KEY,
      LOG_LEVEL: 'warn',
    };
    delete env.DATABASE_APP_URL;
    return run(process.execPath, [BIN, ...args], { env, cwd: ROOT }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: typeof e.code === 'number' ? e.code : -1,
        stdout: e.stdout ?? '',
        stderr: e.stderr ?? String(e),
      }),
    );
  };
}

/** The parsed --json output of a call that succeeded (else an error with its stderr). */
export function jsonOf<T = Record<string, unknown>>(r: CliResult): T {
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** The --json error object a failed call printed on stdout (and its exit code, which must be 1). */
export function errorOf(r: CliResult): { code: string; message: string } {
  if (r.code !== 1) throw new Error(`expected exit 1, got ${r.code}: ${r.stdout}${r.stderr}`);
  return (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error;
}
