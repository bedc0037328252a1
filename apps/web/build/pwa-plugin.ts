import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Plugin } from 'vite';
import { renderIcon } from './png-icon.ts';

const ICONS: [string, number, number][] = [
  ['icons/icon-192.png', 192, 0.2],
  ['icons/icon-512.png', 512, 0.2],
  ['icons/icon-maskable-512.png', 512, 0.28],
];

/**
 * The installable-app parts of the build: PNG icons drawn at build time, and the service worker
 * (src/sw/service-worker.js) with the list of this build's files to precache written into it.
 */
export function pwaPlugin(): Plugin {
  return {
    name: 'steward-pwa',
    apply: 'build',
    generateBundle(_options, bundle) {
      for (const [fileName, size, inset] of ICONS) {
        this.emitFile({ type: 'asset', fileName, source: renderIcon(size, inset) });
      }
      const files = [
        '/',
        '/manifest.webmanifest',
        ...ICONS.map(([f]) => `/${f}`),
        ...Object.keys(bundle)
          .filter((f) => f.startsWith('assets/') && !f.endsWith('.map'))
          .map((f) => `/${f}`),
      ].sort();
      const version = createHash('sha256').update(files.join('\n')).digest('hex').slice(0, 12);
      const template = readFileSync(path.join(import.meta.dirname, '../src/sw/service-worker.js'), 'utf8');
      const source = template
        .replace('self.__PRECACHE__', JSON.stringify(files))
        .replace('self.__VERSION__', JSON.stringify(version));
      this.emitFile({ type: 'asset', fileName: 'sw.js', source });
    },
  };
}
