import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';

/** The folders of a tenant's vault, by what they hold. */
export const VAULT_FOLDERS = [
  'Needs_Action',
  'Plans',
  'Pending_Approval',
  'Approved',
  'Rejected',
  'Done',
  'Briefings',
] as const;
export type VaultFolder = (typeof VAULT_FOLDERS)[number];

const SLUG = /^[a-z0-9][a-z0-9-]{1,62}$/;

/** `<dataDir>/tenants/<slug>/vault`; the slug pattern keeps it inside the data directory. */
export function vaultDir(dataDir: string, slug: string): string {
  if (!SLUG.test(slug)) throw new TypeError('not a tenant slug');
  return path.join(dataDir, 'tenants', slug, 'vault');
}

/**
 * A file name (without extension) built from untrusted text that cannot leave its folder: no path
 * separators, no control characters, no leading dots, no reserved characters, bounded length.
 */
export function safeName(text: string, max = 80): string {
  const name = text
    .normalize('NFKC')
    .replace(/[\\/:*?"<>|#^[\]]|\p{Cc}|\p{Cf}/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/^[.\s]+/, '')
    .slice(0, max)
    .replace(/[.\s]+$/, '');
  return name || 'Untitled';
}

/** The path of `name` in `dir`, refusing anything that would resolve elsewhere. */
export function fileIn(dir: string, name: string): string {
  const file = path.resolve(dir, name);
  if (path.dirname(file) !== path.resolve(dir) || path.basename(file) !== name) {
    throw new TypeError('a vault file name must stay in its folder');
  }
  return file;
}

/** Create a folder of the vault; a symbolic link in its place is refused (it could point anywhere). */
export async function ensureFolder(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const st = await lstat(dir);
  if (!st.isDirectory()) throw new Error(`${path.basename(dir)} in the vault is not a plain folder`);
}

/** Write a file atomically: a temporary file in the same folder, then a rename over the target. */
export async function writeAtomic(file: string, content: string): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, content, { mode: 0o640 });
    await rename(tmp, file);
  } catch (error) {
    await unlink(tmp).catch(() => {});
    throw error;
  }
}

export async function readIfExists(file: string, maxBytes = 1_048_576): Promise<string | null> {
  try {
    const st = await lstat(file);
    if (!st.isFile() || st.size > maxBytes) return null;
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

export async function removeIfExists(file: string): Promise<void> {
  await unlink(file).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}

/** Markdown with YAML front matter. */
export function withFrontMatter(data: Record<string, unknown>, body: string): string {
  return `---\n${stringifyYaml(data, { lineWidth: 0 }).trimEnd()}\n---\n\n${body.trimEnd()}\n`;
}

export interface ParsedNote {
  data: Record<string, unknown>;
  body: string;
}

/** Split a note into its front matter and body; null when it has no (valid) front matter. */
export function parseFrontMatter(text: string): ParsedNote | null {
  const src = text.replace(/^\uFEFF/, '').replace(/\r\n/g, '\n');
  if (!src.startsWith('---\n')) return null;
  const end = src.indexOf('\n---', 3);
  if (end < 0) return null;
  const after = src.slice(end + 4);
  if (after && !after.startsWith('\n')) return null;
  try {
    const data: unknown = parseYaml(src.slice(4, end + 1), { maxAliasCount: 10 });
    if (!data || typeof data !== 'object' || Array.isArray(data)) return null;
    return { data: data as Record<string, unknown>, body: after.replace(/^\n+/, '') };
  } catch {
    return null;
  }
}

/** A fenced code block that the content cannot close early (the fence is longer than any run in it). */
export function fenced(content: string, lang = ''): string {
  const longest = Math.max(2, ...[...content.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = '`'.repeat(longest + 1);
  return `${fence}${lang}\n${content}\n${fence}`;
}

/** Text on one markdown line: no line breaks, no leading markup that would change the structure. */
export function inline(text: string, max = 300): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > max ? one.slice(0, max - 1) + '…' : one;
}
