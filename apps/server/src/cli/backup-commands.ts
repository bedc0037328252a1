import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { AppError } from '@steward/core/errors/app-error';
import { BackupError, createBackup, restoreBackup } from '@steward/db/backup';
import { ownerDatabase } from '../runtime.ts';
import type { CliContext } from './cli-support.ts';

/**
 * `steward backup --out FILE` and `steward restore --in FILE` (see packages/db/src/backup.ts).
 * Both use the owner connection (DATABASE_URL, or the embedded PostgreSQL of the data directory).
 */

const ROOT = path.resolve(import.meta.dirname, '../../../..');

async function stewardVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

/** BackupError → AppError, so the CLI prints one error shape (and --json its code). */
async function mapped<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof BackupError) {
      const code =
        error.code === 'DATABASE_NOT_EMPTY' ||
        error.code === 'DATABASE_IN_USE' ||
        error.code === 'MASTER_KEY_DIFFERS'
          ? 'CONFLICT'
          : 'VALIDATION_FAILED';
      throw new AppError(code, `${error.code}: ${error.message}`);
    }
    throw error;
  }
}

export function addBackupCommands(program: Command, ctx: CliContext): void {
  const configOf = (cmd: Command) => {
    if (!ctx.config) throw new Error('the CLI entry did not pass its configuration');
    return ctx.config(cmd);
  };
  program
    .command('backup')
    .description('a consistent backup of the database and the data directory, in one archive')
    .requiredOption('--out <file>', 'the archive to write (.tar.gz)')
    .option('--include-master-key', 'put master.key in the archive too (keep the archive as safe as the key)')
    .option('--data-dir <dir>', 'data directory')
    .action(async (o: { out: string; includeMasterKey?: boolean }, cmd: Command) => {
      const cfg = configOf(cmd);
      const { url, embedded } = await ownerDatabase(cfg, () => {});
      try {
        const result = await mapped(async () =>
          createBackup({
            ownerUrl: url,
            dataDir: cfg.dataDir,
            out: o.out,
            includeMasterKey: o.includeMasterKey === true,
            stewardVersion: await stewardVersion(),
          }),
        );
        for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
        const m = result.manifest;
        ctx.print(
          cmd,
          {
            file: result.file,
            schemaVersion: m.schemaVersion,
            files: m.files.length,
            bytes: m.files.reduce((s, f) => s + f.size, 0),
            database: m.database.format,
            includesMasterKey: m.includesMasterKey,
            warnings: result.warnings,
          },
          `backup written to ${result.file} (schema version ${m.schemaVersion}, ${m.files.length} files${m.includesMasterKey ? ', with the master key' : ''})`,
        );
      } finally {
        await embedded?.stop();
      }
    });

  program
    .command('restore')
    .description('restore a backup into an empty database and data directory (stop Steward first)')
    .requiredOption('--in <file>', 'the archive written by steward backup')
    .option('--force', 'replace a database that already holds data (and a different master.key)')
    .option('--data-dir <dir>', 'data directory')
    .action(async (o: { in: string; force?: boolean }, cmd: Command) => {
      const cfg = configOf(cmd);
      const { url, embedded } = await ownerDatabase(cfg, () => {});
      try {
        const result = await mapped(() =>
          restoreBackup({ file: o.in, ownerUrl: url, dataDir: cfg.dataDir, force: o.force === true }),
        );
        for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
        ctx.print(
          cmd,
          {
            restored: true,
            schemaVersion: result.manifest.schemaVersion,
            createdAt: result.manifest.createdAt,
            files: result.restoredFiles,
            includesMasterKey: result.manifest.includesMasterKey,
            warnings: result.warnings,
          },
          `restored the backup of ${result.manifest.createdAt} (schema version ${result.manifest.schemaVersion}, ${result.restoredFiles} data files)`,
        );
      } finally {
        await embedded?.stop();
      }
    });
}
