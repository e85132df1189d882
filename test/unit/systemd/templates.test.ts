import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  matchName, parseMarkers, planResource, referencedUnits, resourceVars, TemplateLibrary, verifyUnits, type RenderedUnit,
} from '../../../src/systemd/index.js';
import { fixture, type Fixture } from './_support.js';

const SHIPPED = path.resolve('templates');
const STATIC_UNITS = path.resolve('systemd-units');

describe('systemd templates', () => {
  let fx: Fixture;
  let library: TemplateLibrary;
  beforeEach(async () => {
    fx = fixture();
    library = await TemplateLibrary.load([SHIPPED]);
  });
  afterEach(() => fx.tmp.remove());

  /** Every shipped template, rendered for resource `res` (a match template as vol-<res>.mount). */
  function renderAll(res: string): RenderedUnit[] {
    const vars = resourceVars(fx.config, '/mars', 'alpha', res);
    return library.templates.map((t) => {
      const name = t.fileName.includes('^{') ? `vol-${res.replace(/-/g, '\\x2d')}.mount` : library.renderName(t, vars);
      const found = library.find(name, vars);
      expect(found, name).to.not.equal(undefined);
      return library.render(found!.template, name, found!.vars);
    });
  }

  /** Verify units as the generator does: scripts must exist where ExecStart= says. */
  async function verifyRendered(units: readonly RenderedUnit[]): Promise<{ ok: boolean; output: string }> {
    for (const u of units.filter((x) => x.kind === 'script')) writeFileSync(path.join(fx.config.scriptDir, u.name), u.text, { mode: 0o755 });
    return verifyUnits(new Map(units.filter((u) => u.kind === 'unit').map((u) => [u.name, u.text])));
  }

  for (const res of ['r1', 'my-data']) {
    it(`every shipped template - renders for resource ${res} and passes systemd-analyze verify with no output`, async () => {
      const units = renderAll(res);
      expect(units.map((u) => u.name).sort()).to.have.length(readdirSync(SHIPPED).length);
      const result = await verifyRendered(units);
      expect(result.output).to.equal('');
      expect(result.ok).to.equal(true);
    });
  }

  it('the mount template - ^{mntname} serves vol-r1.mount with Where=/vol/r1, and escapes dashes', () => {
    const vars = resourceVars(fx.config, '/mars', 'alpha', 'my-data');
    const found = library.find('srv-vol-my\\x2ddata.mount', vars)!;
    expect(found.vars['mntname']).to.equal('srv-vol');
    const unit = library.render(found.template, 'srv-vol-my\\x2ddata.mount', found.vars);
    expect(unit.text).to.match(/^Where=\/srv\/vol\/my-data$/m);
    expect(unit.text).to.match(/^What=\/dev\/mars\/my-data$/m);
    expect(library.find('vol-other.mount', vars)).to.equal(undefined);
  });

  it('a mount whose name does not match its Where= - fails verify (so the escape helpers are checked by systemd too)', async () => {
    const vars = resourceVars(fx.config, '/mars', 'alpha', 'r1');
    const found = library.find('vol-r1.mount', vars)!;
    const unit = library.render(found.template, 'vol-r1.mount', found.vars);
    const result = await verifyUnits(new Map([['vol-wrong.mount', unit.text]]));
    expect(result.ok).to.equal(false);
    expect(result.output).to.match(/Where= setting doesn't match unit name/);
  });

  it('the trigger service - ExecStart runs marsadm with the tree root and host of this generation', () => {
    const unit = renderAll('r1').find((u) => u.name === 'phobos-r1-trigger.service')!;
    expect(unit.text).to.include(`ExecStart="${fx.config.scriptDir}/phobos-r1-trigger.script" run "${fx.config.marsadm}" "--root=/mars" "--host=alpha" systemd-trigger-extern r1`);
    expect(referencedUnits(unit.text)).to.include('phobos-r1-trigger.script');
  });

  it('the trigger path unit - watches the resource directory and its actual-<host> directory', () => {
    const unit = renderAll('r1').find((u) => u.name === 'phobos-r1-trigger.path')!;
    expect(unit.text).to.match(/^PathChanged=\/mars\/resource-r1$/m);
    expect(unit.text).to.match(/^PathChanged=\/mars\/resource-r1\/actual-alpha$/m);
    expect(unit.markers.alwaysStart).to.equal(true);
  });

  it('the trigger script - "changed" passes only when a deciding key changed since the last completed "run"', async () => {
    const root = fx.tmp.file('mars');
    mkdirSync(path.join(root, 'resource-r1', 'actual-alpha'), { recursive: true });
    const link = (key: string, value: string): void => {
      const file = path.join(root, 'resource-r1', key);
      rmSync(file, { force: true });
      symlinkSync(value, file);
    };
    link('systemd-want', 'alpha');
    const vars = resourceVars(fx.config, root, 'alpha', 'r1');
    const unit = library.render(library.find('phobos-r1-trigger.script', vars)!.template, 'phobos-r1-trigger.script', vars);
    const script = fx.tmp.file('trigger.script');
    writeFileSync(script, unit.text, { mode: 0o755 });
    const run = (...args: string[]): number | null => spawnSync(script, args).status;
    expect(run('changed')).to.equal(0);
    expect(run('run', 'true')).to.equal(0);
    expect(run('changed')).to.equal(1);
    link('replay-alpha', 'log-000000001-alpha,5,0'); // replication progress: not a deciding key
    expect(run('changed')).to.equal(1);
    link('actual-alpha/is-primary', '1');
    expect(run('changed')).to.equal(0);
    expect(run('changed')).to.equal(0); // not seen yet: the trigger did not finish
    expect(run('run', 'false')).to.equal(1); // a failed run records nothing: the next event retries
    expect(run('changed')).to.equal(0);
    expect(run('run', 'true')).to.equal(0);
    expect(run('changed')).to.equal(1);
    expect(run('bogus')).to.equal(2);
  });

  it('the trigger script - "run" runs its command again while a deciding key moved during it, at most 5 times', async () => {
    const root = fx.tmp.file('mars');
    mkdirSync(path.join(root, 'resource-r1', 'actual-alpha'), { recursive: true });
    symlinkSync('alpha', path.join(root, 'resource-r1', 'systemd-want'));
    const vars = resourceVars(fx.config, root, 'alpha', 'r1');
    const unit = library.render(library.find('phobos-r1-trigger.script', vars)!.template, 'phobos-r1-trigger.script', vars);
    const script = fx.tmp.file('trigger.script');
    writeFileSync(script, unit.text, { mode: 0o755 });
    const calls = fx.tmp.file('calls');
    const isPrimary = path.join(root, 'resource-r1', 'actual-alpha', 'is-primary');
    // A command that, on its first call only, changes a deciding key as it ends: the path
    // unit would miss that change (it does not watch while the service runs).
    const once = `echo x >> ${calls}; [ $(wc -l < ${calls}) -gt 1 ] || ln -sfn 1 ${isPrimary}`;
    expect(spawnSync(script, ['changed']).status).to.equal(0);
    expect(spawnSync(script, ['run', 'sh', '-c', once]).status).to.equal(0);
    expect(readFileSync(calls, 'utf8').split('\n').filter(Boolean)).to.have.length(2);
    expect(spawnSync(script, ['changed']).status).to.equal(1); // the second run's inputs are what was seen
    // A key that moves at every run: five runs, then the next event takes over.
    const always = `echo x >> ${calls}; ln -sfn $(date +%s%N) ${isPrimary}`;
    writeFileSync(calls, '');
    expect(spawnSync(script, ['changed']).status).to.equal(1);
    rmSync(path.join(root, 'resource-r1', 'systemd-want'));
    symlinkSync('beta', path.join(root, 'resource-r1', 'systemd-want'));
    expect(spawnSync(script, ['changed']).status).to.equal(0);
    expect(spawnSync(script, ['run', 'sh', '-c', always]).status).to.equal(0);
    expect(readFileSync(calls, 'utf8').split('\n').filter(Boolean)).to.have.length(5);
    expect(spawnSync(script, ['changed']).status).to.equal(0);
  });

  it('systemd-units - the static units pass systemd-analyze verify with no output (marsadm at a path that exists)', async () => {
    const units = new Map(readdirSync(STATIC_UNITS).map((n) => [n, readFileSync(path.join(STATIC_UNITS, n), 'utf8')]));
    const result = await verifyUnits(units, { replace: new Map([['/usr/bin/marsadm', fx.config.marsadm]]) });
    expect(result.output).to.equal('');
    expect(result.ok).to.equal(true);
  });

  it('markers - ALWAYS_START, KEEP_RUNNING, keywords and ALSO are read; two # or no space are not markers', () => {
    const m = parseMarkers('# ALWAYS_START\n# KEEP_RUNNING\n# DEFAULT_START\n# MOUNTED_STOP\n## TESTING_START\n#X_STOP\n# ALSO=a-r1.service\n');
    expect(m).to.deep.equal({
      alwaysStart: true, keepRunning: true, alwaysDisabled: false, startFor: ['DEFAULT'], stopFor: ['MOUNTED'], also: ['a-r1.service'],
    });
  });

  it('matchName - binds each ^{var} to the text it matches, or gives undefined', () => {
    expect(matchName('^{a}-r1.mount', 'srv-x-r1.mount')).to.deep.equal({ a: 'srv-x' });
    expect(matchName('^{a}@^{b}.service', 'app@one.service')).to.deep.equal({ a: 'app', b: 'one' });
    expect(matchName('^{a}-r1.mount', '-r1.mount')).to.equal(undefined);
    expect(matchName('^{a}-r1.mount', 'vol-r1.service')).to.equal(undefined);
  });

  it('the search path - the first directory holding a file name wins', async () => {
    const local = fx.tmp.file('local');
    mkdirSync(local);
    writeFileSync(path.join(local, 'phobos-{{res}}-stack.script'), '#!/bin/sh\n# mine\nexit 0\n');
    const lib = await TemplateLibrary.load([local, SHIPPED]);
    const vars = resourceVars(fx.config, '/mars', 'alpha', 'r1');
    const found = lib.find('phobos-r1-stack.script', vars)!;
    expect(found.template.file).to.equal(path.join(local, 'phobos-{{res}}-stack.script'));
    expect(lib.templates.filter((t) => t.fileName === 'phobos-{{res}}-stack.script')).to.have.length(1);
  });

  it('a template that does not render - names the template and the variables it may use', async () => {
    const local = fx.tmp.file('broken');
    mkdirSync(local);
    writeFileSync(path.join(local, 'app-{{res}}.service'), '[Service]\nExecStart=/bin/true {{nosuchvar}}\n');
    const lib = await TemplateLibrary.load([local]);
    const vars = resourceVars(fx.config, '/mars', 'alpha', 'r1');
    expect(() => planResource(lib, vars, { startUnit: 'app-r1.service', stopUnit: undefined, want: undefined }, fx.config))
      .to.throw(/template .*app-\{\{res\}\}\.service does not render: .*nosuchvar.*fix the template \(variables: .*res/);
  });

  it('TemplateLibrary.watch - a changed template is picked up without a restart (chokidar)', async () => {
    const local = fx.tmp.file('watched');
    mkdirSync(local);
    const file = path.join(local, 'app-{{res}}.service');
    writeFileSync(file, '[Service]\nExecStart=/bin/true one\n');
    const lib = await TemplateLibrary.load([local]);
    let reloads = 0;
    const stop = lib.watch(() => reloads++);
    try {
      await sleep(300); // chokidar's initial scan
      writeFileSync(file, '[Service]\nExecStart=/bin/true two\n');
      writeFileSync(path.join(local, 'other-{{res}}.service'), '[Service]\nExecStart=/bin/true\n');
      for (let i = 0; i < 100 && lib.templates.length < 2; i++) await sleep(50);
      const vars = resourceVars(fx.config, '/mars', 'alpha', 'r1');
      expect(lib.render(lib.find('app-r1.service', vars)!.template, 'app-r1.service', vars).text).to.include('two');
      expect(lib.templates).to.have.length(2);
      expect(reloads).to.be.greaterThan(0);
    } finally {
      await stop();
    }
  });
});
