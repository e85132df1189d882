#!/usr/bin/env node
// Builds the native addon with node-gyp against the headers of the Node that runs this
// script, never downloading anything (this project builds on machines without network
// access beyond the package registry). Run by `npm install` and `npm run build`.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const prefix = path.dirname(path.dirname(process.execPath));
const nodedir = existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : null;
if (!nodedir) {
  console.error(`phobos: Node headers not found under ${prefix}/include/node; ` +
    'install the Node.js headers package for this Node (e.g. the distribution\'s nodejs-dev) and retry');
  process.exit(1);
}

function findNodeGyp() {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    // Installed without devDependencies: use the node-gyp npm itself ships.
  }
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) {
    return process.env.npm_config_node_gyp;
  }
  const bundled = path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(bundled)) return bundled;
  console.error('phobos: node-gyp not found; run `npm install` in the project directory');
  process.exit(1);
}

const args = [findNodeGyp(), 'rebuild', `--nodedir=${nodedir}`, '--jobs=max'];
const result = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(result.status ?? 1);
