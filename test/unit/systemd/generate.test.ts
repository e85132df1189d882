import { expect } from 'chai';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';

import { main } from '../../../src/cli/main.js';
import {
  commitResource, planResource, resourceVars, Systemctl, TemplateLibrary, type SystemdSettings,
} from '../../../src/systemd/index.js';
import { actualKey, dataKey, MarsTree, primaryKey, sizeKey, UUID_KEY } from '../../../src/tree/index.js';
import { fixture, withEnv, type Fixture } from './_support.js';

const APP = '[Unit]\nBindsTo=vol-{{esc res}}.mount\nAfter=vol-{{esc res}}.mount\n[Service]\nExecStart=/bin/sleep infinity\n';

async function marsadm(fx: Fixture, root: string, ...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough(), err = new PassThrough();
  let o = '', e = '';
  out.on('data', (d: Buffer) => (o += d.toString()));
  err.on('data', (d: Buffer) => (e += d.toString()));
  const code = await withEnv(fx.env, () => main(['--root', root, '--host', 'alpha', ...argv], out, err));
  return { code, out: o, err: e };
}

describe('systemd generation and commands', () => {
  let fx: Fixture;
  let local: string;
  let root: string;
  let tree: MarsTree;
  beforeEach(async () => {
    fx = fixture();
    local = fx.tmp.file('local-templates');
    mkdirSync(local);
    writeFileSync(path.join(local, 'app-{{res}}.service'), APP);
    fx = fixture(local);
    root = fx.tmp.file('mars');
    tree = await MarsTree.open({ root, host: 'alpha', create: true, requireCluster: false });
    await tree.set(UUID_KEY, '01234567-89ab-cdef-0123-456789abcdef');
    await tree.set(sizeKey('r1'), '1048576');
    await tree.set(primaryKey('r1'), 'alpha');
    await tree.set(dataKey('r1', 'alpha'), '/dev/vg/r1');
    await tree.set(dataKey('r1', 'beta'), '/dev/vg/r1');
  });
  afterEach(() => fx.tmp.remove());

  const unitFiles = (): string[] => readdirSync(fx.config.unitDir).sort();

  async function generate(settings: SystemdSettings) {
    const library = await TemplateLibrary.load(fx.config.templatePath);
    const units = planResource(library, resourceVars(fx.config, root, 'alpha', 'r1'), settings, fx.config);
    return commitResource('r1', units, fx.config, new Systemctl({ binary: fx.config.systemctl, backoffMs: 1 }));
  }

  it('commitResource - writes the closure, reloads once, starts the ALWAYS_START path unit', async () => {
    const report = await generate({ startUnit: 'app-r1.service', stopUnit: 'vol-r1.mount', want: 'alpha' });
    expect(unitFiles()).to.deep.equal(['app-r1.service', 'phobos-r1-trigger.path', 'phobos-r1-trigger.service', 'vol-r1.mount']);
    expect(readdirSync(fx.config.scriptDir)).to.deep.equal(['phobos-r1-trigger.script']);
    expect(report.reloaded).to.equal(true);
    expect(fx.calls()).to.deep.equal([
      'daemon-reload', 'enable --runtime phobos-r1-trigger.path', 'start --job-mode=fail phobos-r1-trigger.path',
    ]);
    expect(readFileSync(path.join(fx.config.unitDir, 'vol-r1.mount'), 'utf8')).to.match(/^### phobos: generated for resource r1 from /);
  });

  it('commitResource - a second run with nothing changed writes nothing and skips daemon-reload', async () => {
    await generate({ startUnit: 'app-r1.service', stopUnit: 'vol-r1.mount', want: 'alpha' });
    const before = fx.calls().length;
    const report = await generate({ startUnit: 'app-r1.service', stopUnit: 'vol-r1.mount', want: 'alpha' });
    expect(report.written).to.deep.equal([]);
    expect(fx.calls().slice(before)).to.not.include('daemon-reload');
    // enabled when written; the path unit is started again (a no-op when it runs)
    expect(fx.calls().slice(before)).to.deep.equal(['start --job-mode=fail phobos-r1-trigger.path']);
  });

  it('commitResource - systemd-analyze verify runs only when a file would change (every trigger run regenerates)', async () => {
    await generate({ startUnit: 'app-r1.service', stopUnit: 'vol-r1.mount', want: 'alpha' });
    const analyzeLog = fx.tmp.file('analyze.log');
    const analyze = fx.tmp.file('bin/systemd-analyze');
    writeFileSync(analyze, `#!/bin/sh\necho "$*" >> '${analyzeLog}'\nexit 0\n`, { mode: 0o755 });
    const config = { ...fx.config, systemdAnalyze: analyze };
    const run = async (): Promise<void> => {
      const library = await TemplateLibrary.load(config.templatePath);
      const settings = { startUnit: 'app-r1.service', stopUnit: 'vol-r1.mount', want: 'alpha' };
      await commitResource('r1', planResource(library, resourceVars(config, root, 'alpha', 'r1'), settings, config), config,
        new Systemctl({ binary: config.systemctl, backoffMs: 1 }));
    };
    await run();
    expect(existsSync(analyzeLog)).to.equal(false);
    writeFileSync(path.join(local, 'app-{{res}}.service'), `${APP}# changed\n`);
    await run();
    expect(readFileSync(analyzeLog, 'utf8')).to.match(/^verify /);
  });

  it('commitResource - units no longer wanted are stopped and disappear', async () => {
    await generate({ startUnit: 'app-r1.service', stopUnit: 'vol-r1.mount', want: 'alpha' });
    const before = fx.calls().length;
    const report = await generate({ startUnit: undefined, stopUnit: undefined, want: 'alpha' });
    expect([...report.removed].sort()).to.deep.equal(['app-r1.service', 'vol-r1.mount']);
    expect(unitFiles()).to.deep.equal(['phobos-r1-trigger.path', 'phobos-r1-trigger.service']);
    expect(fx.calls().slice(before)).to.include('stop --job-mode=fail app-r1.service vol-r1.mount');
    expect(fx.calls().slice(before)).to.include('daemon-reload');
  });

  it('commitResource - a unit that fails verify is refused and the previous units stay byte for byte', async () => {
    await generate({ startUnit: 'app-r1.service', stopUnit: 'vol-r1.mount', want: 'alpha' });
    const snapshot = new Map(unitFiles().map((n) => [n, readFileSync(path.join(fx.config.unitDir, n), 'utf8')]));
    writeFileSync(path.join(local, 'app-{{res}}.service'), '[Service]\nExecStart=/no/such/binary\n');
    const calls = fx.calls().length;
    let error: Error | undefined;
    await generate({ startUnit: 'app-r1.service', stopUnit: 'vol-r1.mount', want: 'alpha' }).catch((e: Error) => (error = e));
    expect(error?.message).to.match(/systemd-analyze verify rejects the generated units: .*\/no\/such\/binary.*previous units stay/);
    expect(new Map(unitFiles().map((n) => [n, readFileSync(path.join(fx.config.unitDir, n), 'utf8')]))).to.deep.equal(snapshot);
    expect(fx.calls().length).to.equal(calls);
    expect(readdirSync(fx.config.unitDir).filter((n) => n.startsWith('.'))).to.deep.equal([]);
  });

  it('commitResource - a template that does not render is refused before anything is written', async () => {
    await generate({ startUnit: 'app-r1.service', stopUnit: 'vol-r1.mount', want: 'alpha' });
    const snapshot = unitFiles().map((n) => readFileSync(path.join(fx.config.unitDir, n), 'utf8'));
    writeFileSync(path.join(local, 'app-{{res}}.service'), '[Service]\nExecStart=/bin/true {{#if}}\n');
    let error: Error | undefined;
    await generate({ startUnit: 'app-r1.service', stopUnit: 'vol-r1.mount', want: 'alpha' }).catch((e: Error) => (error = e));
    expect(error?.message).to.match(/app-\{\{res\}\}\.service does not render/);
    expect(unitFiles().map((n) => readFileSync(path.join(fx.config.unitDir, n), 'utf8'))).to.deep.equal(snapshot);
  });

  it('set-systemd-unit - generates, stores the keys, and sets systemd-want to the primary', async () => {
    const r = await marsadm(fx, root, 'set-systemd-unit', 'r1', 'app-r1.service', 'vol-r1.mount');
    expect(r.err).to.equal('');
    expect(r.code).to.equal(0);
    expect(r.out).to.match(/^r1: units in .*: 5 written, 0 unchanged, 0 removed \(daemon-reload\)\n$/);
    expect(await tree.getValue('resource-r1/systemd-start-unit')).to.equal('app-r1.service');
    expect(await tree.getValue('resource-r1/systemd-stop-unit')).to.equal('vol-r1.mount');
    expect(await tree.getValue('resource-r1/systemd-want')).to.equal('alpha');
    const get = await marsadm(fx, root, 'get-systemd-unit', 'r1', '--json');
    expect(JSON.parse(get.out)).to.deep.equal({
      resource: 'r1', startUnit: 'app-r1.service', stopUnit: 'vol-r1.mount', startUnits: ['app-r1.service'], stopUnits: ['vol-r1.mount'],
    });
  });

  it('set-systemd-unit DEFAULT - the keyword selects the templates marked # DEFAULT_START / _STOP', async () => {
    const r = await marsadm(fx, root, 'set-systemd-unit', 'r1', 'DEFAULT');
    expect(r.code, r.err).to.equal(0);
    expect(unitFiles()).to.include('phobos-r1-stack.service');
    expect(readdirSync(fx.config.scriptDir).sort()).to.deep.equal(['phobos-r1-stack.script', 'phobos-r1-trigger.script']);
    const get = await marsadm(fx, root, 'get-systemd-unit', 'r1', '--json');
    expect(JSON.parse(get.out).startUnits).to.deep.equal(['phobos-r1-stack.service']);
  });

  it('set-systemd-unit - bad input: one line naming the unit and the fix, exit 1, tree and units unchanged', async () => {
    await marsadm(fx, root, 'set-systemd-unit', 'r1', 'app-r1.service', 'vol-r1.mount');
    const before = unitFiles();
    for (const [args, message] of [
      [['nosuch-r1.service'], /unit nosuch-r1\.service matches no template .* and is not installed .*add a template for it, install it, or pass --force/],
      [['NOSUCH'], /no template is marked `# NOSUCH_START`/],
      [['not a unit'], /'not a unit' is not a unit name/],
      [['r2'], /'r2' is not a unit name/],
    ] as const) {
      const r = await marsadm(fx, root, 'set-systemd-unit', 'r1', ...args);
      expect(r.code, args.join(' ')).to.equal(1);
      expect(r.err.trim().split('\n'), r.err).to.have.length(1);
      expect(r.err).to.match(message);
    }
    expect(await tree.getValue('resource-r1/systemd-start-unit')).to.equal('app-r1.service');
    expect(unitFiles()).to.deep.equal(before);
    const missing = await marsadm(fx, root, 'set-systemd-unit', 'nores', 'app-nores.service');
    expect(missing.err).to.match(/no resource nores/);
  });

  it('set-systemd-unit - an installed unit without a template is accepted', async () => {
    writeFileSync(path.join(fx.env['PHOBOS_SYSTEMD_UNIT_PATH']!, 'nginx.service'), '[Service]\nExecStart=/bin/true\n');
    const r = await marsadm(fx, root, 'set-systemd-unit', 'r1', 'nginx.service', 'vol-r1.mount');
    expect(r.code, r.err).to.equal(0);
    expect(unitFiles()).to.not.include('nginx.service');
  });

  it('set-systemd-want / get-systemd-want - members or (none); others refused', async () => {
    expect((await marsadm(fx, root, 'set-systemd-want', 'r1', 'beta')).code).to.equal(0);
    expect((await marsadm(fx, root, 'get-systemd-want', 'r1')).out).to.equal('beta\n');
    expect((await marsadm(fx, root, 'set-systemd-want', 'r1', '(none)')).code).to.equal(0);
    expect((await marsadm(fx, root, 'get-systemd-want', 'r1')).out).to.equal('(none)\n');
    const bad = await marsadm(fx, root, 'set-systemd-want', 'r1', 'gamma');
    expect(bad.code).to.equal(1);
    expect(bad.err).to.match(/gamma is not a member of r1; give a member, \(none\) to pause the stack, or --force/);
  });

  it('systemd-trigger-extern - starts where wanted and exported, stops otherwise, records the status', async () => {
    await marsadm(fx, root, 'set-systemd-unit', 'r1', 'app-r1.service', 'vol-r1.mount');
    let calls = fx.calls().length;
    // Wanted here but the device is not exported yet: stop.
    expect((await marsadm(fx, root, 'systemd-trigger-extern', 'r1')).code).to.equal(0);
    expect(fx.calls().slice(calls)).to.include('stop --job-mode=fail vol-r1.mount');
    expect(await tree.getValue(actualKey('r1', 'alpha', 'systemd-status'))).to.equal('stop,0,alpha');

    await tree.set(actualKey('r1', 'alpha', 'is-primary'), '1');
    calls = fx.calls().length;
    expect((await marsadm(fx, root, 'systemd-trigger-extern', 'r1')).code).to.equal(0);
    expect(fx.calls().slice(calls)).to.include('start --job-mode=fail app-r1.service');
    expect(await tree.getValue(actualKey('r1', 'alpha', 'systemd-status'))).to.equal('start,0,alpha');

    await marsadm(fx, root, 'set-systemd-want', 'r1', '(none)');
    calls = fx.calls().length;
    expect((await marsadm(fx, root, 'systemd-trigger-extern', 'r1')).code).to.equal(0);
    expect(fx.calls().slice(calls)).to.include('stop --job-mode=fail vol-r1.mount');
    expect(await tree.getValue(actualKey('r1', 'alpha', 'systemd-status'))).to.equal('stop,0,(none)');
    const json = JSON.parse((await marsadm(fx, root, 'get-systemd-want', 'r1', '--json')).out);
    expect(json).to.deep.equal({ resource: 'r1', want: '(none)', status: { alpha: { action: 'stop', code: 0, want: '(none)' }, beta: null } });
  });

  it('systemd-trigger-extern - a failing stop is retried, then recorded with its exit code, exit 1', async () => {
    await marsadm(fx, root, 'set-systemd-unit', 'r1', 'app-r1.service', 'vol-r1.mount');
    fx.failOn('stop', 5);
    const r = await marsadm(fx, root, 'systemd-trigger-extern', 'r1');
    expect(r.code).to.equal(1);
    expect(r.err).to.match(/stop vol-r1\.mount .*exit 5/);
    expect(fx.calls().filter((c) => c.startsWith('stop'))).to.have.length(5 * 1);
    expect(fx.calls()).to.include('reset-failed vol-r1.mount');
    expect(await tree.getValue(actualKey('r1', 'alpha', 'systemd-status'))).to.match(/^stop,5,alpha/);
  });

  it('systemd-trigger - regenerates every resource and removes the units of resources that are gone', async () => {
    await marsadm(fx, root, 'set-systemd-unit', 'r1', 'app-r1.service', 'vol-r1.mount');
    writeFileSync(path.join(fx.config.unitDir, 'phobos-gone-trigger.path'),
      '### phobos: generated for resource gone from somewhere\n[Path]\nPathChanged=/x\n');
    const r = await marsadm(fx, root, 'systemd-trigger');
    expect(r.code, r.err).to.equal(0);
    expect(unitFiles()).to.not.include('phobos-gone-trigger.path');
    expect(unitFiles()).to.include('app-r1.service');
    expect(existsSync(path.join(root, 'resource-r1', '.systemd-trigger'))).to.equal(false);
    expect((await marsadm(fx, root, 'systemd-trigger', 'r1')).code).to.equal(0);
    expect(existsSync(path.join(root, 'resource-r1', '.systemd-trigger'))).to.equal(true);
  });
});
