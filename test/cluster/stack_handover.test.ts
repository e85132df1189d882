/**
 * Cluster tier: a handover moves the service stack (docs/systemd.md, issue 6 part 3).
 * systemd itself is not here: a stand-in for each host's trigger path unit runs the real
 * `marsadm systemd-trigger-extern r1` (compiled, as a child process with that host's
 * environment) whenever the host's tree changes, and a recording fake `systemctl` takes
 * the start/stop calls. The VM tier (test/vm/) runs the same flow under real systemd.
 */
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { expect } from 'chai';

import { TRIGGER_FILE } from '../../src/systemd/index.js';
import { MarsTree } from '../../src/tree/index.js';
import { eventually, MARSADM, type TestHost } from '../support/test_host.js';
import { TestCluster } from '../support/test_cluster.js';

const RES = 'r1';
const SIZE = 4 << 20;
const UNIT = 'webapp.service';

/** One host's systemd stand-in: environment, fake systemctl, and the trigger loop. */
class FakeSystemd {
  readonly env: NodeJS.ProcessEnv;
  private readonly dir: string;
  private stopped = false;
  private loop: Promise<void> | null = null;

  constructor(readonly host: TestHost) {
    this.dir = host.tmp.file('systemd');
    const bin = path.join(this.dir, 'bin'), units = path.join(this.dir, 'system');
    for (const d of [bin, units, path.join(this.dir, 'unit'), path.join(this.dir, 'scripts')]) mkdirSync(d, { recursive: true });
    writeFileSync(path.join(units, UNIT), '[Unit]\nDescription=a web app on r1\n[Service]\nExecStart=/bin/true\n');
    // Records every call; exits with the code in ./fail for calls naming the word in it.
    writeFileSync(path.join(bin, 'systemctl'), `#!/bin/sh\necho "$*" >> '${this.dir}/calls'\n` +
      `[ -f '${this.dir}/fail' ] && read -r word code < '${this.dir}/fail' && case " $* " in *" $word "*) exit "$code";; esac\nexit 0\n`);
    chmodSync(path.join(bin, 'systemctl'), 0o755);
    this.env = {
      ...process.env, PHOBOS_NO_SYSLOG: '1', PHOBOS_SYSTEMCTL: path.join(bin, 'systemctl'), PHOBOS_MARSADM: MARSADM,
      PHOBOS_UNIT_DIR: path.join(this.dir, 'unit'), PHOBOS_SCRIPT_DIR: path.join(this.dir, 'scripts'),
      PHOBOS_RUN_DIR: host.runDir, PHOBOS_SYSTEMD_UNIT_PATH: units,
    };
  }

  /** `start webapp.service` etc., in order. */
  calls(): string[] {
    try {
      return readFileSync(path.join(this.dir, 'calls'), 'utf8').split('\n').filter((l) => / (start|stop) /.test(` ${l} `));
    } catch {
      return [];
    }
  }

  failOn(word: string, code: number): void {
    writeFileSync(path.join(this.dir, 'fail'), `${word} ${code}\n`);
  }

  heal(): void {
    writeFileSync(path.join(this.dir, 'fail'), '');
  }

  /** marsadm as this host, in a child process with this host's environment. */
  run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [MARSADM, ...argv, '--root', this.host.root, '--host', this.host.name], { env: this.env });
      let out = '', err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('close', (code) => resolve({ code: code ?? 1, out, err }));
    });
  }

  /**
   * Miss every change of the deciding keys, as a real path unit misses one that lands while
   * its service ends, until the trigger file (`.systemd-trigger`) is touched.
   */
  missChanges(): void {
    this.missing = true;
  }

  private missing = false;

  /** The path unit: run systemd-trigger-extern whenever the resource's keys changed. */
  start(): void {
    let seen = '';
    let touched = this.touched();
    this.loop = (async () => {
      while (!this.stopped) {
        // As in the trigger script, the trigger file is part of the fingerprint.
        const touchedNow = this.touched();
        const now = `${await this.fingerprint()}|${touchedNow}`;
        if (touchedNow !== touched) this.missing = false;
        touched = touchedNow;
        if (now !== seen) {
          seen = now;
          if (!this.missing) await this.run('systemd-trigger-extern', RES);
        }
        await new Promise((r) => setTimeout(r, 150));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /**
   * The deciding keys with their stamps, as the generated trigger script compares them:
   * a key set back to its old value (a compensated handover) still counts as a change.
   */
  private async fingerprint(): Promise<string> {
    this.tree ??= await MarsTree.open({ root: this.host.root, host: this.host.name });
    const keys = ['primary', 'systemd-want', `actual-${this.host.name}/is-primary`].map((k) => `resource-${RES}/${k}`);
    const entries = await Promise.all(keys.map((k) => this.tree!.get(k)));
    return entries.map((e) => `${e?.value}@${e?.stamp}`).join('|');
  }

  private tree: MarsTree | null = null;

  private touched(): number {
    try {
      return statSync(path.join(this.host.root, `resource-${RES}`, TRIGGER_FILE)).mtimeMs;
    } catch {
      return 0;
    }
  }
}

describe('cluster tier: a handover moves the service stack (systemd stand-in)', function () {
  this.timeout(120_000);
  let cluster: TestCluster;
  let alpha: TestHost, beta: TestHost;
  let fakes: Map<TestHost, FakeSystemd>;

  const get = (h: TestHost, key: string) => h.getLink(`resource-${RES}/${key}`);
  const status = (h: TestHost, of: TestHost) => get(h, `actual-${of.name}/systemd-status`);

  before(async () => {
    cluster = await TestCluster.create(['alpha', 'beta']);
    [alpha, beta] = cluster.hosts as [TestHost, TestHost];
    for (const h of cluster.hosts) {
      closeSync(openSync(h.tmp.file('disk'), 'w'));
      truncateSync(h.tmp.file('disk'), SIZE);
    }
    await alpha.ok('create-resource', RES, alpha.tmp.file('disk'));
    await eventually('beta to learn of r1', async () => (await get(beta, 'size')) === String(SIZE));
    await beta.ok('join-resource', RES, beta.tmp.file('disk'));
    fakes = new Map(cluster.hosts.map((h) => [h, new FakeSystemd(h)]));
    const set = await fakes.get(alpha)!.run('set-systemd-unit', RES, UNIT);
    expect(set.code, set.err).to.equal(0);
    for (const f of fakes.values()) f.start();
    await eventually('the stack to run on alpha', async () => (await status(alpha, alpha)) === 'start,0,alpha', 30_000);
  });

  after(async () => {
    for (const f of fakes?.values() ?? []) await f.stop();
    await cluster?.remove();
  });

  it('primary on beta stops the stack on alpha first and starts it on beta after', async () => {
    const r = await fakes.get(beta)!.run('primary', RES, '--json', '--timeout', '60');
    expect(r.code, r.err).to.equal(0);
    const phases = r.out.split('\n').filter((l) => l.includes('"ms"') && l.includes('"phase"'))
      .map((l) => (JSON.parse(l) as { phase: string }).phase);
    expect(phases).to.deep.equal(['check', 'stop-stack', 'wait-close', 'leave', 'catch-up', 'become', 'start-stack']);
    expect(await status(beta, beta)).to.equal('start,0,beta');
    expect(await status(beta, alpha)).to.match(/^stop,0,beta/);
    expect(fakes.get(alpha)!.calls().filter((c) => c.includes(UNIT)).slice(-1)[0]).to.match(/^stop .*webapp/);
    expect(fakes.get(beta)!.calls().filter((c) => c.includes(UNIT)).slice(-1)[0]).to.match(/^start .*webapp/);
  });

  it('a stack that fails to stop: the handover is refused and the old side keeps (restarts) its stack', async () => {
    fakes.get(beta)!.failOn('stop', 5);
    try {
      const r = await fakes.get(alpha)!.run('primary', RES, '--timeout', '30');
      expect(r.code).to.not.equal(0);
      expect(r.err).to.match(/phase stop-stack: the service stack of r1 failed to stop on beta \(exit 5/);
      expect(r.err).to.match(/beta stays primary and gets its service stack back/);
      expect(await get(beta, 'primary')).to.equal('beta');
      expect(await get(beta, 'systemd-want')).to.equal('beta');
      await eventually('beta to start its stack again', async () => (await status(beta, beta)) === 'start,0,beta', 30_000);
    } finally {
      fakes.get(beta)!.heal();
    }
  });

  it('a change the path unit misses: start-stack touches the trigger after 20 s, and the stack starts', async () => {
    fakes.get(alpha)!.missChanges();
    const started = Date.now();
    const r = await fakes.get(alpha)!.run('primary', RES, '--json', '--timeout', '60');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.include('"touchedTrigger":true');
    expect(Date.now() - started).to.be.greaterThan(20_000);
    expect(await status(alpha, alpha)).to.equal('start,0,alpha');
    expect(await status(alpha, beta)).to.match(/^stop,0,alpha/);
    // Back to beta, as the next test expects.
    const back = await fakes.get(beta)!.run('primary', RES, '--timeout', '60');
    expect(back.code, back.err).to.equal(0);
    expect(await status(beta, beta)).to.equal('start,0,beta');
  });

  it('primary --force starts the stack on the new side; the old side stops it when it hears', async () => {
    await cluster.cutNow(alpha, beta);
    try {
      await alpha.ok('disconnect', RES);
      const r = await fakes.get(alpha)!.run('primary', '--force', RES, '--timeout', '60');
      expect(r.code, r.err).to.equal(0);
      expect(await status(alpha, alpha)).to.equal('start,0,alpha');
      // beta, cut off, still runs its stack: it has not heard.
      expect(await status(beta, beta)).to.equal('start,0,beta');
    } finally {
      cluster.heal(alpha, beta);
    }
    await eventually('beta to stop its stack', async () => (await status(beta, beta)).startsWith('stop,0,alpha'), 40_000);
  });
});
