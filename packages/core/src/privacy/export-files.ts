import path from 'node:path';

/** Where a finished export archive lives: <data dir>/exports/<tenant id>/<export id>.tar.gz. */
export function exportFilePath(dataDir: string, tenantId: string, exportId: string): string {
  return path.join(exportsDir(dataDir, tenantId), `${exportId}.tar.gz`);
}

export function exportsDir(dataDir: string, tenantId: string): string {
  return path.join(dataDir, 'exports', tenantId);
}
