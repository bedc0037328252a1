#!/usr/bin/env node
// Runs the TypeScript sources directly (tsx); no build step between `git clone` and `npm start`.
import { register } from 'tsx/esm/api';

register();
await import('../apps/server/src/cli.ts');
