import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';

import { native } from '../../src/dataplane/native.js';
import { missingCommand, requireTier } from '../support/tiers.js';
import { randomBytes, tempDir, textBytes, type TempDir } from '../support/tmp.js';

const root = new URL('../../', import.meta.url).pathname;
/** Seconds of fuzzing; the issue asks for 60 s in CI. */
const SECONDS = Number(process.env['PHOBOS_FUZZ_SECONDS'] ?? 60);

describe('fuzz tier (libFuzzer, clang)', function () {
  this.timeout((SECONDS + 120) * 1000);
  let tmp: TempDir;

  before(function () {
    requireTier(this, 'fuzz', missingCommand('clang', 'run `bash scripts/install-test-deps.sh` as root (installs clang)'));
    tmp = tempDir('phobos-fuzz-');
  });
  after(() => tmp?.remove());

  it(`fuzz - the log scanner survives ${SECONDS} s of libFuzzer with ASan and UBSan`, async () => {
    const binary = tmp.file('scan_fuzz');
    const build = spawnSync('clang', [
      '-g', '-O1', '-fsanitize=fuzzer,address,undefined', '-fno-sanitize-recover=undefined',
      '-std=gnu11', 'test/fuzz/scan_fuzz.c', 'addon/crc32c.c', 'kernel/common/phobos_log.c', '-o', binary,
    ], { cwd: root, encoding: 'utf8' });
    expect(build.status, build.stderr).to.equal(0);

    // Seed corpus: real logs, so the fuzzer starts from valid records.
    const corpus = tmp.file('corpus');
    mkdirSync(corpus);
    const seeds = [
      [{ type: 1, data: textBytes(100), seq: 1 }, { type: 2, deviceOffset: 4096, length: 512, seq: 2, syncedPos: 168 }],
      [{ type: 1, data: randomBytes(300, 1), seq: 1 }, { type: 3, seq: 2, syncedPos: 368 }],
      [{ type: 1, data: textBytes(2000), seq: 7 }],
    ];
    for (const [i, recs] of seeds.entries()) writeFileSync(`${corpus}/seed${i}`, await native.encodeRecords(recs));

    const artifacts = tmp.file('artifacts');
    mkdirSync(artifacts);
    const fuzz = spawnSync(binary, [corpus, `-max_total_time=${SECONDS}`, '-max_len=8192', '-timeout=10',
      `-artifact_prefix=${artifacts}/`, '-print_final_stats=1'], { encoding: 'utf8', timeout: (SECONDS + 60) * 1000 });
    const stats = /stat::number_of_executed_units:\s*(\d+)/.exec(fuzz.stderr);
    console.log(`      libFuzzer: ${stats?.[1] ?? '?'} inputs in ${SECONDS} s`);
    expect(fuzz.status, fuzz.stderr.slice(-3000)).to.equal(0);
    expect(readdirSync(artifacts)).to.deep.equal([]);
    expect(Number(stats?.[1] ?? 0)).to.be.greaterThan(1000);
  });
});
