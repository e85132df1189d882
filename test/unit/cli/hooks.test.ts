import { expect } from 'chai';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { formatCommandRecord, shellQuote, syslogDatagram } from '../../../src/cli/command_log.js';
import { findCommand } from '../../../src/cli/command_table.js';
import { todoKey } from '../../../src/tree/index.js';
import { marsadm, treeFixture, type TreeFixture } from './_cli_fixture.js';

process.env['PHOBOS_NO_SYSLOG'] = '1';

describe('marsadm hooks and command log', () => {
  let fx: TreeFixture;
  let hooks: string;

  /** A shell hook that appends its name, arguments and environment to calls.txt, then runs body. */
  function hook(name: string, body = 'exit 0', mode = 0o755): void {
    const file = path.join(hooks, name);
    writeFileSync(file, '#!/bin/sh\n' +
      `echo "${name} args=[$*] res=$PHOBOS_RESOURCE cmd=$PHOBOS_COMMAND phase=$PHOBOS_HOOK status=$PHOBOS_EXIT_STATUS host=$MARS_HOST" ` +
      `>> "${path.join(hooks, 'calls.txt')}"\n${body}\n`);
    chmodSync(file, mode);
  }
  const calls = (): string[] => {
    try {
      return readFileSync(path.join(hooks, 'calls.txt'), 'utf8').trim().split('\n');
    } catch {
      return [];
    }
  };

  beforeEach(async () => {
    fx = await treeFixture('r1', ['alpha']);
    hooks = fx.tmp.file('hooks');
    mkdirSync(hooks);
    process.env['PHOBOS_HOOK_DIR'] = hooks;
    delete process.env['PHOBOS_COMMAND_LOG'];
  });
  afterEach(() => {
    delete process.env['PHOBOS_HOOK_DIR'];
    delete process.env['PHOBOS_COMMAND_LOG'];
    fx.remove();
  });

  it('hooks - pre and post run around a state-changing verb, with its arguments, resource and exit status', async () => {
    hook('hook-pre-set-link');
    hook('hook-post-set-link');
    const key = todoKey('r1', 'alpha', 'note');
    const r = await marsadm(...fx.args, 'set-link', key, 'hello');
    expect(r.code, r.err).to.equal(0);
    expect(calls()).to.deep.equal([
      `hook-pre-set-link args=[${key} hello] res= cmd=set-link phase=pre status= host=alpha`,
      `hook-post-set-link args=[${key} hello] res= cmd=set-link phase=post status=0 host=alpha`,
    ]);
  });

  it('hooks - a verb on a resource gets PHOBOS_RESOURCE', async () => {
    hook('hook-pre-pause-replay');
    // No daemon: the switch is written and the wait gives up after --timeout; the hook ran first.
    await marsadm(...fx.args, '--timeout', '1', 'pause-replay', 'r1');
    expect(calls()[0]).to.equal('hook-pre-pause-replay args=[r1] res=r1 cmd=pause-replay phase=pre status= host=alpha');
  });

  it('hooks - a failing pre hook aborts the command with one line naming the hook; nothing is written', async () => {
    hook('hook-pre-set-link', 'echo "maintenance window closed" >&2; exit 3');
    hook('hook-post-set-link');
    const key = todoKey('r1', 'alpha', 'note');
    const r = await marsadm(...fx.args, 'set-link', key, 'hello');
    expect(r.code).to.equal(1);
    const lines = r.err.trim().split('\n');
    expect(lines.at(-1)).to.equal(`marsadm set-link: pre hook ${path.join(hooks, 'hook-pre-set-link')} exited with status 3 ` +
      '(maintenance window closed); the command was not run');
    expect(await fx.tree.getValue(key)).to.equal(undefined);
    expect(calls()).to.have.length(1); // no post hook for a command that did not run
  });

  it('hooks - the post hook sees a failure\'s status and message, and its own failure only warns', async () => {
    hook('hook-post-set-link', 'echo "err=$PHOBOS_ERROR" >> "$(dirname "$0")/calls.txt"; exit 5');
    const r = await marsadm(...fx.args, 'set-link', 'resource-r1/bogus-key/x', 'v');
    expect(r.code).to.equal(1);
    const [call, error] = calls();
    expect(call).to.match(/phase=post status=1 /);
    expect(error).to.match(/^err=marsadm set-link: /);
    expect(r.err).to.include('warning: post hook');
    expect(r.err).to.include('exited with status 5');
    expect(r.err.trim().split('\n').at(-1)).to.match(/^marsadm set-link: /); // the command's own error is last
  });

  it('hooks - a pre hook that outlives --timeout is killed with its children, and the command not run', async () => {
    hook('hook-pre-set-link', 'sleep 30; exit 0');
    const started = Date.now();
    const r = await marsadm(...fx.args, '--timeout', '1', 'set-link', todoKey('r1', 'alpha', 'note'), 'x');
    expect(Date.now() - started).to.be.below(5000);
    expect(r.code).to.equal(1);
    expect(r.err).to.match(/pre hook .*hook-pre-set-link did not finish within 1 s \(--timeout\) and was killed; the command was not run/);
    expect(await fx.tree.getValue(todoKey('r1', 'alpha', 'note'))).to.equal(undefined);
  });

  it('hooks - not run for views, for --dry-run, or when not executable (which warns)', async () => {
    hook('hook-pre-view');
    hook('hook-pre-set-link', 'exit 0', 0o644);
    expect((await marsadm(...fx.args, 'view')).code).to.equal(0);
    const r = await marsadm(...fx.args, 'set-link', todoKey('r1', 'alpha', 'note'), 'x');
    expect(r.code).to.equal(0);
    expect(r.err).to.match(/hook .*hook-pre-set-link is not executable, skipped/);
    hook('hook-pre-set-link', 'exit 1');
    expect((await marsadm(...fx.args, '--dry-run', 'set-link', todoKey('r1', 'alpha', 'note'), 'y')).code).to.equal(0);
    expect(calls()).to.deep.equal([]);
  });

  it('hooks - the command table marks state-changing verbs, not views or waits', () => {
    for (const name of ['primary', 'invalidate', 'pause-sync-global', 'up', 'create-resource', 'set-link']) {
      expect(findCommand(name)?.changesState, name).to.equal(true);
    }
    for (const name of ['view', 'view-replay-rate', 'wait-resource', 'wait-umount', 'log-check', 'get-link']) {
      expect(findCommand(name)?.changesState, name).to.not.equal(true);
    }
  });

  it('command log - every command with arguments and outcome is appended to PHOBOS_COMMAND_LOG', async () => {
    const log = fx.tmp.file('commands.log');
    process.env['PHOBOS_COMMAND_LOG'] = log;
    await marsadm(...fx.args, 'view-role', 'r1');
    await marsadm(...fx.args, 'view-role', 'nosuch');
    await marsadm(...fx.args, 'bogus-verb');
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    expect(lines).to.have.length(3);
    expect(lines[0]).to.match(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[^ ]+Z \\[\\d+\\] alpha: marsadm --root ${fx.root} --host alpha view-role r1 -> exit 0$`));
    expect(lines[1]).to.match(/ alpha: marsadm .* view-role nosuch -> exit 1: no resource nosuch in /);
    expect(lines[2]).to.match(/ bogus-verb -> exit 2: marsadm: unknown command 'bogus-verb'/);
  });

  it('command log - lines quote arguments a shell would split, and stay one line', () => {
    expect(shellQuote('r1')).to.equal('r1');
    expect(shellQuote("it's x")).to.equal(`'it'\\''s x'`);
    expect(formatCommandRecord({ argv: ['primary', 'r1'], host: 'beta', exitCode: 1, error: 'line one\nline two' }))
      .to.equal('beta: marsadm primary r1 -> exit 1: line one line two');
  });

  it('command log - an unwritable log file warns but does not change the result', async () => {
    process.env['PHOBOS_COMMAND_LOG'] = fx.tmp.file('no/such/dir/commands.log');
    const r = await marsadm(...fx.args, 'view-role', 'r1');
    expect(r.code).to.equal(0);
    expect(r.err).to.match(/cannot append to the command log .*commands\.log \(PHOBOS_COMMAND_LOG\)/);
  });

  it('command log - to syslog: one datagram per command, user.notice on success and user.err on failure', async () => {
    const socket = fx.tmp.file('log.sock');
    const syslog = await DatagramSink.bind(socket);
    try {
      delete process.env['PHOBOS_NO_SYSLOG'];
      process.env['PHOBOS_SYSLOG_SOCKET'] = socket;
      await marsadm(...fx.args, 'view-role', 'r1');
      await marsadm(...fx.args, 'view-role', 'nosuch');
      const [ok, failed] = await syslog.take(2);
      const prefix = `marsadm\\[${process.pid}\\]: alpha: marsadm --root ${fx.root} --host alpha view-role`;
      expect(ok).to.match(new RegExp(`^<13>[A-Z][a-z]{2} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d ${prefix} r1 -> exit 0$`));
      expect(failed).to.match(new RegExp(`^<11>.* ${prefix} nosuch -> exit 1: no resource nosuch in `));
    } finally {
      process.env['PHOBOS_NO_SYSLOG'] = '1';
      delete process.env['PHOBOS_SYSLOG_SOCKET'];
      syslog.close();
    }
  });

  it('command log - no syslog listening: the command\'s result and output are unchanged', async () => {
    delete process.env['PHOBOS_NO_SYSLOG'];
    process.env['PHOBOS_SYSLOG_SOCKET'] = fx.tmp.file('nobody-listens.sock');
    try {
      const r = await marsadm(...fx.args, 'view-role', 'r1');
      expect(r).to.include({ code: 0, err: '' });
    } finally {
      process.env['PHOBOS_NO_SYSLOG'] = '1';
      delete process.env['PHOBOS_SYSLOG_SOCKET'];
    }
  });

  it('command log - the syslog datagram: priority, local time as syslog(3) writes it, tag and pid', () => {
    const at = new Date(2026, 11, 8, 3, 4, 5);
    expect(syslogDatagram('beta: marsadm primary r1 -> exit 0', true, at, 42))
      .to.equal('<13>Dec  8 03:04:05 marsadm[42]: beta: marsadm primary r1 -> exit 0');
    expect(syslogDatagram('x', false, new Date(2026, 0, 18, 23, 0, 0), 7)).to.equal('<11>Jan 18 23:00:00 marsadm[7]: x');
  });
});

/**
 * A UNIX datagram socket standing in for /dev/log. Node cannot bind one, so a python3
 * child does and prints each datagram as a JSON string on a line.
 */
class DatagramSink {
  private lines: string[] = [];
  private waiters: (() => void)[] = [];

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    let tail = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      tail += s;
      const parts = tail.split('\n');
      tail = parts.pop() ?? '';
      this.lines.push(...parts);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async bind(socket: string): Promise<DatagramSink> {
    const child = spawn('python3', ['-c', [
      'import json, socket, sys',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
      's.bind(sys.argv[1])',
      'print("ready", flush=True)',
      'while True: print(json.dumps(s.recv(65536).decode()), flush=True)',
    ].join('\n'), socket]);
    const sink = new DatagramSink(child);
    const exited = new Promise<never>((_, reject) => {
      const fail = (why: string): void => reject(new Error(`python3 (the test's syslog socket) ${why}; install it: bash scripts/install-test-deps.sh`));
      child.once('exit', (code) => fail(`exited with ${code}`));
      child.once('error', (e) => fail(`did not start: ${e.message}`));
    });
    exited.catch(() => undefined);
    await Promise.race([sink.take(1), exited]);
    return sink;
  }

  /** The next n datagrams (the first call also takes the "ready" line). */
  async take(n: number): Promise<string[]> {
    const deadline = Date.now() + 5000;
    while (this.lines.length < n) {
      if (Date.now() > deadline) throw new Error(`syslog socket got ${this.lines.length} of ${n} datagrams in 5 s`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return this.lines.splice(0, n).map((l) => (l === 'ready' ? l : JSON.parse(l) as string));
  }

  close(): void {
    this.child.kill();
  }
}
