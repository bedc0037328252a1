#!/usr/bin/env node
// Runs the server compiled to JavaScript (apps/server/dist), built here from the TypeScript sources
// when it is missing or older than them: no build step between `git clone` and `npm start`, and no
// TypeScript loader in the running process.
import { setFlagsFromString } from 'node:v8';
import { pathToFileURL } from 'node:url';
import { ensureServerBuild } from '../apps/server/build/server-build.js';

// V8 lets the old generation grow to several times what is live before a full collection; under load
// that is ~200 MB of garbage. Growing by 30 % at most keeps the server's memory near what it uses, for
// a few more (short) full collections; see bench/RESULTS.md. Set --heap-growing-percent in NODE_OPTIONS
// or on the command line to choose another value.
const nodeOptions = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`;
if (!/--heap[-_]growing[-_]percent/.test(nodeOptions)) setFlagsFromString('--heap-growing-percent=30');

await import(pathToFileURL(await ensureServerBuild()).href);
