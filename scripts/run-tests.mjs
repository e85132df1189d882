#!/usr/bin/env node
// npm test: runs every tier through mocha; the reporter ends with "N passed, N failed".
// Tiers that cannot run here say why (and fail under PHOBOS_REQUIRE_ALL_TIERS=1).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const mocha = require.resolve('mocha/bin/mocha.js');
const result = spawnSync(process.execPath, [mocha, ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(result.status ?? 1);
