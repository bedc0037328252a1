#!/usr/bin/env node
// Runs the server compiled to one JavaScript file (apps/server/dist/steward.js), built here from the
// TypeScript sources when it is missing or older than them: no build step between `git clone` and
// `npm start`, and no TypeScript loader in the running process.
import { pathToFileURL } from 'node:url';
import { ensureServerBuild } from '../apps/server/build/server-build.js';

await import(pathToFileURL(await ensureServerBuild()).href);
