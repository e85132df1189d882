/**
 * The SSH transport against a real OpenSSH sshd, across a bridge between two network
 * namespaces (test/support/netns.ts): sshd runs in `beta`, the client in `alpha`
 * (test/system/_ssh_client.ts, since the lab's addresses exist only in its namespaces).
 */
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import ssh2 from 'ssh2';

import {
  authorizedKeysLine, ensureClusterKey, fingerprint, generateEd25519KeyPair, installAuthorizedKey, parsePublicKeyLine, type ClusterKey,
} from '../../src/peer/ssh/keys.js';
import { sshTransportFactory } from '../../src/peer/ssh/ssh_transport.js';
import { createLab, systemTierMissing, type Lab, type Sshd } from '../support/netns.js';
import { requireTier } from '../support/tiers.js';
import type { ClientArgs } from './_ssh_client.js';

const root = new URL('../../', import.meta.url).pathname;
const clientScript = new URL('./_ssh_client.ts', import.meta.url).pathname;
const COMMENT = 'phobos-system-test';
/** cat, behind quotes that authorized_keys must carry through to sshd intact. */
const FORCED = 'sh -c "exec cat"';

interface ClientEvent { event: string; [field: string]: unknown }

interface ClientRun {
  readonly child: ChildProcess;
  /** Resolves with the first event of this kind (rejects if the client exits without it). */
  next(event: string): Promise<ClientEvent>;
  readonly stderr: () => string;
}

describe('system tier: SSH transport', function () {
  this.timeout(60000);
  let lab: Lab | undefined;
  let sshd: Sshd;
  let clusterKey: ClusterKey;

  before(async function () {
    requireTier(this, 'system', systemTierMissing());
    lab = await createLab({ name: 'phsshtr', hosts: ['alpha', 'beta'] });
    clusterKey = await ensureClusterKey(path.join(lab.dir, 'alpha-ssh'));
    const authorizedKeys = path.join(lab.dir, 'beta-root-ssh', 'authorized_keys');
    await installAuthorizedKey(authorizedKeys, authorizedKeysLine(clusterKey.publicKeyLine, FORCED, COMMENT), COMMENT);
    sshd = await lab.startSshd('beta', { authorizedKeysFile: authorizedKeys });
  });

  after(async function () {
    await lab?.destroy();
  });

  function baseArgs(): Omit<ClientArgs, 'mode'> {
    return {
      host: 'beta', address: sshd.address, port: sshd.port,
      hostKey: sshd.hostKeyBlob.toString('base64'), privateKeyPath: clusterKey.privateKeyPath,
    };
  }

  /** Start the client in namespace alpha; its JSON lines become events. */
  function startClient(args: ClientArgs): ClientRun {
    const child = lab!.spawn('alpha', process.execPath, ['--import', 'tsx', clientScript, JSON.stringify(args)], {
      cwd: root, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const events: ClientEvent[] = [];
    const waiters: (() => void)[] = [];
    let stdoutTail = '';
    let stderr = '';
    let exited = false;
    const wake = (): void => waiters.splice(0).forEach((w) => w());
    child.stdout!.setEncoding('utf8').on('data', (text: string) => {
      const lines = (stdoutTail + text).split('\n');
      stdoutTail = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) events.push(JSON.parse(line) as ClientEvent);
      wake();
    });
    child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.once('close', () => {
      exited = true;
      wake();
    });
    const next = (event: string): Promise<ClientEvent> => new Promise((resolve, reject) => {
      const check = (): void => {
        const found = events.find((e) => e.event === event || e.event === 'error');
        if (found?.event === 'error') return reject(new Error(`client failed: ${String(found['error'])}; stderr: ${stderr.trim()}`));
        if (found) return resolve(found);
        if (exited) return reject(new Error(`client exited without a "${event}" event; stderr: ${stderr.trim()}`));
        waiters.push(check);
      };
      check();
    });
    return { child, next, stderr: () => stderr };
  }

  const sshdLog = async (): Promise<string> => readFile(sshd.logFile, 'utf8');
  const count = (text: string, needle: string): number => text.split(needle).length - 1;

  it('ssh - 8 MiB of random bytes come back byte-identical, and closed resolves after close()', async function () {
    const result = await startClient({ ...baseArgs(), mode: 'roundtrip', bytes: 8 << 20 }).next('result');
    console.log(`      connect ${(result['connectMs'] as number).toFixed(1)} ms, 8 MiB echo ${(result['transferMs'] as number).toFixed(0)} ms, close ${(result['closeMs'] as number | null)?.toFixed(1)} ms`);
    expect(result['received']).to.equal(8 << 20);
    expect(result['receivedSha']).to.equal(result['sentSha']);
    expect(result['identical']).to.equal(true);
    expect(result['wasOpen'], 'closed resolved before close() was called').to.equal(true);
    expect(result['closeMs'], 'closed did not resolve within 5 s of close()').to.be.a('number');
    expect(result['description']).to.equal(`ssh:root@${sshd.address}:${sshd.port}`);
  });

  it('ssh - the forced command wins: asking for `rm -rf DIR` runs (quoted) cat, and DIR survives', async function () {
    const victim = path.join(lab!.dir, 'victim');
    await mkdir(victim, { recursive: true });
    await writeFile(path.join(victim, 'keep-me'), 'still here\n');
    const result = await startClient({ ...baseArgs(), mode: 'connect', command: `rm -rf ${victim}` }).next('result');
    expect(result['ok'], String(result['error'])).to.equal(true);
    expect(result['echoed']).to.equal(result['sent']);
    expect(existsSync(path.join(victim, 'keep-me'))).to.equal(true);
    expect(await sshdLog()).to.include(`forced-command (key-option) '${FORCED}'`);
  });

  it('ssh - the far command exiting (EOF to cat) resolves closed without close()', async function () {
    const result = await startClient({ ...baseArgs(), mode: 'eof' }).next('result');
    expect(result['echoed']).to.equal('last words\n');
    expect(result['closeMs'], 'closed did not resolve within 5 s of the far side exiting').to.be.a('number');
  });

  it('ssh - a wrong pinned host key is refused, naming the host and both fingerprints, before any authentication', async function () {
    const wrong = parsePublicKeyLine(generateEd25519KeyPair('wrong').public).blob;
    const before = await sshdLog();
    const result = await startClient({ ...baseArgs(), mode: 'connect', hostKey: wrong.toString('base64') }).next('result');
    expect(result['ok']).to.equal(false);
    const error = String(result['error']);
    expect(error).to.match(/^host key mismatch for peer beta \(ssh:root@10\.231\.\d+\.\d+:2222\)/);
    expect(error).to.include(`presented ${fingerprint(sshd.hostKeyBlob)}`);
    expect(error).to.include(`pinned is ${fingerprint(wrong)}`);
    expect(error).to.not.include('\n');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const after = await sshdLog();
    expect(count(after, 'Connection from'), 'the client never reached sshd').to.equal(count(before, 'Connection from') + 1);
    expect(count(after, 'Accepted key'), 'the client offered its key anyway').to.equal(count(before, 'Accepted key'));
    expect(count(after, 'Starting session')).to.equal(count(before, 'Starting session'));
  });

  it('ssh - a pinned ECDSA key is asked for and accepted; a type sshd lacks is a clear error', async function () {
    const ecdsa = parsePublicKeyLine(sshd.ecdsaHostKeyLine).blob;
    const ok = await startClient({ ...baseArgs(), mode: 'connect', hostKey: ecdsa.toString('base64') }).next('result');
    expect(ok['ok'], String(ok['error'])).to.equal(true);
    const rsa = parsePublicKeyLine(ssh2.utils.generateKeyPairSync('rsa', { bits: 2048 }).public).blob;
    const missing = await startClient({ ...baseArgs(), mode: 'connect', hostKey: rsa.toString('base64') }).next('result');
    expect(missing['error']).to.match(/^peer beta \(ssh:root@.*:2222\) offers no ssh-rsa host key, the type pinned for it \(SHA256:/);
  });

  it('ssh - a client key missing from authorized_keys is refused with a clear message', async function () {
    const stranger = await ensureClusterKey(path.join(lab!.dir, 'stranger-ssh'));
    const before = await sshdLog();
    const result = await startClient({ ...baseArgs(), mode: 'connect', privateKeyPath: stranger.privateKeyPath }).next('result');
    expect(result['ok']).to.equal(false);
    expect(String(result['error'])).to.equal(
      `the cluster key ${stranger.privateKeyPath} was refused by peer beta (ssh:root@${sshd.address}:2222); ` +
      'its authorized_keys lacks the cluster key line (re-run marsadm join-cluster on beta)');
    expect(count(await sshdLog(), 'Starting session')).to.equal(count(before, 'Starting session'));
  });

  it('ssh - connection refused and a missing pin are one-line errors naming the peer', async function () {
    const refused = await startClient({ ...baseArgs(), mode: 'connect', port: 2223 }).next('result');
    expect(refused['error']).to.equal(`connection refused by peer beta (ssh:root@${sshd.address}:2223): no sshd listening on port 2223`);
    const factory = sshTransportFactory({ privateKeyPath: clusterKey.privateKeyPath, hostKeyFor: () => undefined });
    let message = '';
    await factory({ host: 'gamma', address: '10.0.0.9' }).catch((e: Error) => (message = e.message));
    expect(message).to.match(/^no SSH host key pinned for peer gamma .*join-cluster on gamma/);
  });

  it('ssh - a cut link (veth down mid-transfer) closes the transport within 25 s by keepalive', async function () {
    this.timeout(45000);
    const client = startClient({ ...baseArgs(), mode: 'cut' });
    await client.next('streaming');
    const cut = Date.now();
    await lab!.linkDown('beta');
    try {
      await client.next('closed');
      const seconds = (Date.now() - cut) / 1000;
      console.log(`      closed ${seconds.toFixed(1)} s after the cut (keepalive 5 s x 3)`);
      expect(seconds).to.be.below(25);
      expect(client.stderr()).to.include('Keepalive timeout');
    } finally {
      await lab!.linkUp('beta');
    }
  });
});
