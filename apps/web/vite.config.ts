import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';
import { preloadAppPlugin } from './build/preload-app-plugin.ts';
import { pwaPlugin } from './build/pwa-plugin.ts';

export default defineConfig({
  root: import.meta.dirname,
  plugins: [react(), pwaPlugin(), preloadAppPlugin()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
  },
  server: { proxy: { '/api': 'http://localhost:8080' } },
});
