#!/usr/bin/env node
// npm test: compiles src/ to dist/ (process-level tests run the compiled marsadm, as
// operators do), then runs every tier through mocha; the reporter ends with
// "N passed, N failed". Tiers that cannot run here say why (and fail under
// PHOBOS_REQUIRE_ALL_TIERS=1).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const tsc = require.resolve('typescript/bin/tsc');
const build = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
if (build.status !== 0) {
  console.log('0 passed, 1 failed (TypeScript build of src/ failed, see above)');
  process.exit(1);
}
// Thousands of test commands would fill the machine's journal (docs/marsadm.md "Command log").
process.env['PHOBOS_NO_SYSLOG'] ??= '1';
const mocha = require.resolve('mocha/bin/mocha.js');
const result = spawnSync(process.execPath, [mocha, ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(result.status ?? 1);
