import type { HtmlTagDescriptor, Plugin, Rolldown } from 'vite';

type OutputBundle = Rolldown.OutputBundle;
type OutputChunk = Rolldown.OutputChunk;

/**
 * The files of the chunks the entry imports dynamically (the app itself: src/main.tsx imports it
 * once the session is under way), with the chunks they import statically, less what the page
 * loads anyway (the entry and its own imports).
 */
export function entryDynamicImports(entry: OutputChunk, bundle: OutputBundle): string[] {
  const loaded = new Set([entry.fileName, ...entry.imports]);
  const files = new Set<string>();
  const visit = (fileName: string) => {
    if (loaded.has(fileName) || files.has(fileName)) return;
    const chunk = bundle[fileName];
    if (chunk?.type !== 'chunk') return;
    files.add(fileName);
    for (const imported of chunk.imports) visit(imported);
  };
  for (const fileName of entry.dynamicImports) visit(fileName);
  return [...files];
}

/**
 * `<link rel="modulepreload">` in index.html for the app chunk: the browser fetches and compiles it
 * from the start, in parallel with the small entry, which meanwhile resumes the session. Without it
 * the app would only be asked for once the entry has run.
 */
export function preloadAppPlugin(): Plugin {
  return {
    name: 'steward-preload-app',
    apply: 'build',
    transformIndexHtml: {
      order: 'post',
      handler(_html, ctx) {
        if (!ctx.chunk || !ctx.bundle) return [];
        return entryDynamicImports(ctx.chunk, ctx.bundle).map((fileName): HtmlTagDescriptor => ({
          tag: 'link',
          attrs: { rel: 'modulepreload', crossorigin: true, href: `/${fileName}` },
          injectTo: 'head',
        }));
      },
    },
  };
}
