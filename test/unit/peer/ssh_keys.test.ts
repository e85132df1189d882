import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import ssh2 from 'ssh2';

import {
  authorizedKeysLine, ensureClusterKey, fingerprint, formatPublicKey, generateEd25519KeyPair, installAuthorizedKey, installClusterKey,
  knownHostKeyFor, parseKnownHosts, parsePublicKeyLine, readHostPublicKey, removeAuthorizedKey, writeKnownHosts,
} from '../../../src/peer/ssh/keys.js';
import { tempDir, type TempDir } from '../../support/tmp.js';

const hasSshKeygen = spawnSync('sh', ['-c', 'command -v ssh-keygen']).status === 0;
const mode = (file: string): number => statSync(file).mode & 0o777;
const newKey = (comment = 'test'): { private: string; public: string } => generateEd25519KeyPair(comment);

async function rejection(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected a rejection');
}

describe('peer/ssh/keys', () => {
  let tmp: TempDir;
  beforeEach(() => (tmp = tempDir('phobos-sshkeys-')));
  afterEach(() => tmp.remove());

  describe('public keys and fingerprints', () => {
    it('ssh - parses "type base64 comment", keeping spaces in the comment, and without a comment', () => {
      const { public: line } = newKey('x');
      const [type, base64] = line.split(' ');
      const key = parsePublicKeyLine(`  ${type} ${base64} root@host with spaces \n`);
      expect(key.type).to.equal('ssh-ed25519');
      expect(key.blob.toString('base64')).to.equal(base64);
      expect(key.comment).to.equal('root@host with spaces');
      expect(parsePublicKeyLine(`${type} ${base64}`).comment).to.equal('');
      expect(formatPublicKey(key)).to.equal(`${type} ${base64} root@host with spaces`);
    });

    it('ssh - refuses empty, non-base64 and mislabelled keys with one-line reasons', () => {
      const [, base64] = newKey().public.split(' ');
      expect(() => parsePublicKeyLine('')).to.throw(/^empty public key/);
      expect(() => parsePublicKeyLine('ssh-ed25519')).to.throw(/not a public key line/);
      expect(() => parsePublicKeyLine('ssh-ed25519 not*base64')).to.throw(/invalid base64/);
      expect(() => parsePublicKeyLine(`ssh-rsa ${base64}`)).to.throw(/says ssh-rsa but its data is ssh-ed25519/);
      expect(() => parsePublicKeyLine('ssh-ed25519 AAAA')).to.throw(/not an SSH key/);
    });

    it('ssh - generateEd25519KeyPair never returns the 1-in-256 truncated key ssh2 1.17 makes', () => {
      // 1000 raw ssh2 keys include a truncated one with probability 1 - (255/256)^1000 = 98%.
      for (let i = 0; i < 1000; i++) {
        const pair = generateEd25519KeyPair('t');
        expect(parsePublicKeyLine(pair.public).blob).to.have.length(51);
        expect(ssh2.utils.parseKey(pair.private)).to.not.be.instanceOf(Error);
      }
      const truncated = `ssh-ed25519 ${Buffer.concat([Buffer.from([0, 0, 0, 11]), Buffer.from('ssh-ed25519'), Buffer.from([0, 0, 0, 31]), Buffer.alloc(31, 1)]).toString('base64')}`;
      expect(() => parsePublicKeyLine(truncated)).to.throw(/is 50 bytes, not 51 \(truncated or malformed\)/);
    });

    it('ssh - fingerprint() prints what ssh-keygen -lf prints', function () {
      if (!hasSshKeygen) this.skip();
      const file = tmp.file('k.pub');
      const { public: line } = newKey();
      writeFileSync(file, `${line}\n`);
      const out = spawnSync('ssh-keygen', ['-lf', file], { encoding: 'utf8' });
      expect(out.status, out.stderr).to.equal(0);
      expect(out.stdout.split(' ')[1]).to.equal(fingerprint(parsePublicKeyLine(line).blob));
    });

    it('ssh - readHostPublicKey reads a .pub file and names the file when it cannot', async () => {
      const { public: line } = newKey('root@beta');
      writeFileSync(tmp.file('host.pub'), `${line}\n`);
      expect((await readHostPublicKey(tmp.file('host.pub'))).blob).to.deep.equal(parsePublicKeyLine(line).blob);
      expect(await rejection(readHostPublicKey(tmp.file('missing.pub')))).to.match(/^cannot read sshd host key .*missing\.pub \(ENOENT\); install openssh-server/);
      writeFileSync(tmp.file('bad.pub'), 'garbage\n');
      expect(await rejection(readHostPublicKey(tmp.file('bad.pub')))).to.match(/^sshd host key .*bad\.pub: not a public key line/);
    });
  });

  describe('the cluster key', () => {
    it('ssh - ensureClusterKey makes dir 0700, key 0600 and .pub once, then keeps them', async () => {
      const dir = tmp.file('ssh');
      const first = await ensureClusterKey(dir);
      expect(mode(dir)).to.equal(0o700);
      expect(mode(first.privateKeyPath)).to.equal(0o600);
      expect(mode(`${first.privateKeyPath}.pub`)).to.equal(0o644);
      const privateText = readFileSync(first.privateKeyPath, 'utf8');
      const parsed = ssh2.utils.parseKey(privateText);
      if (parsed instanceof Error || Array.isArray(parsed)) throw new Error('cluster key does not parse');
      expect(parsed.isPrivateKey()).to.equal(true);
      expect(parsePublicKeyLine(first.publicKeyLine).blob).to.deep.equal(parsed.getPublicSSH());
      const second = await ensureClusterKey(dir);
      expect(second).to.deep.equal(first);
      expect(readFileSync(first.privateKeyPath, 'utf8')).to.equal(privateText);
      expect(readdirSync(dir).sort()).to.deep.equal(['cluster_ed25519', 'cluster_ed25519.pub']);
    });

    it('ssh - two ensureClusterKey racing on an empty dir end with one key', async () => {
      const dir = tmp.file('ssh');
      const [a, b] = await Promise.all([ensureClusterKey(dir), ensureClusterKey(dir)]);
      expect(a).to.deep.equal(b);
      expect(readdirSync(dir).sort()).to.deep.equal(['cluster_ed25519', 'cluster_ed25519.pub']);
    });

    it('ssh - ensureClusterKey rewrites a missing or stale .pub from the private key', async () => {
      const dir = tmp.file('ssh');
      const { privateKeyPath, publicKeyLine } = await ensureClusterKey(dir);
      writeFileSync(`${privateKeyPath}.pub`, `${newKey().public}\n`);
      expect((await ensureClusterKey(dir)).publicKeyLine).to.equal(publicKeyLine.replace(/ \S+$/, ' phobos-cluster'));
      expect(parsePublicKeyLine(readFileSync(`${privateKeyPath}.pub`, 'utf8')).blob)
        .to.deep.equal(parsePublicKeyLine(publicKeyLine).blob);
    });

    it('ssh - installClusterKey writes a received key, accepts it again, refuses a different one unless forced', async () => {
      const dir = tmp.file('ssh');
      const a = newKey('a');
      const b = newKey('b');
      const installed = await installClusterKey(dir, a.private, a.public);
      expect(installed.publicKeyLine).to.equal(a.public);
      expect(mode(installed.privateKeyPath)).to.equal(0o600);
      expect(readFileSync(installed.privateKeyPath, 'utf8')).to.equal(a.private.endsWith('\n') ? a.private : `${a.private}\n`);
      await installClusterKey(dir, a.private, a.public);
      const refused = await rejection(installClusterKey(dir, b.private, b.public));
      expect(refused).to.include(fingerprint(parsePublicKeyLine(a.public).blob));
      expect(refused).to.include(fingerprint(parsePublicKeyLine(b.public).blob));
      expect(refused).to.match(/holds another cluster key .*leave it first, or force/);
      await installClusterKey(dir, b.private, b.public, { force: true });
      expect(readFileSync(`${installed.privateKeyPath}.pub`, 'utf8')).to.equal(`${b.public}\n`);
      expect(readdirSync(dir).sort()).to.deep.equal(['cluster_ed25519', 'cluster_ed25519.pub']);
    });

    it('ssh - installClusterKey refuses a private key that does not match its public line', async () => {
      const message = await rejection(installClusterKey(tmp.file('ssh'), newKey().private, newKey().public));
      expect(message).to.match(/private half \(SHA256:.*\) does not match its public line/);
      expect(await rejection(installClusterKey(tmp.file('ssh'), 'not a key', newKey().public))).to.match(/not a usable SSH private key/);
    });
  });

  describe('authorized_keys', () => {
    const key = newKey('cluster');
    const COMMENT = 'phobos-1234';
    const line = (command = 'marsadm peer-serve'): string => authorizedKeysLine(key.public, command, COMMENT);

    it('ssh - authorizedKeysLine restricts the key to the forced command and quotes it for sshd', () => {
      const [type, base64] = key.public.split(' ');
      expect(line()).to.equal(`restrict,command="marsadm peer-serve" ${type} ${base64} ${COMMENT}`);
      expect(line('echo "a b" \\x')).to.equal(`restrict,command="echo \\"a b\\" \\x" ${type} ${base64} ${COMMENT}`);
      expect(() => line('a\nb')).to.throw(/line break/);
      expect(() => line('a\\')).to.throw(/ends with a backslash/);
      expect(() => line(' ')).to.throw(/forced command is empty/);
      expect(() => authorizedKeysLine(key.public, 'x', 'two words')).to.throw(/one word/);
    });

    it('ssh - ssh-keygen reads the line (options included) as the same key', function () {
      if (!hasSshKeygen) this.skip();
      writeFileSync(tmp.file('ak'), `${line('sh -c "echo \\"hi\\""')}\n`);
      const out = spawnSync('ssh-keygen', ['-lf', tmp.file('ak')], { encoding: 'utf8' });
      expect(out.status, out.stderr).to.equal(0);
      expect(out.stdout).to.include(fingerprint(parsePublicKeyLine(key.public).blob));
    });

    it('ssh - installAuthorizedKey creates dir 0700 and file 0600, then is idempotent', async () => {
      const file = tmp.file('root/.ssh/authorized_keys');
      expect(await installAuthorizedKey(file, line(), COMMENT)).to.equal('added');
      expect(mode(tmp.file('root/.ssh'))).to.equal(0o700);
      expect(mode(file)).to.equal(0o600);
      expect(readFileSync(file, 'utf8')).to.equal(`${line()}\n`);
      const inode = statSync(file).ino;
      expect(await installAuthorizedKey(file, line(), COMMENT)).to.equal('unchanged');
      expect(statSync(file).ino, 'an unchanged file was rewritten').to.equal(inode);
    });

    it('ssh - installAuthorizedKey replaces only its own line and keeps every other byte', async () => {
      const file = tmp.file('authorized_keys');
      const other = newKey('other').public;
      const before = Buffer.concat([
        Buffer.from(`# operator's keys\n${other}\r\n`),
        Buffer.from([0x73, 0x73, 0x68, 0xe9, 0xff, 0x0a]), // not UTF-8: must survive as bytes
        Buffer.from(`${authorizedKeysLine(key.public, 'old command', COMMENT)}\n`),
        Buffer.from(`${other.replace(/ \S+$/, ' x' + COMMENT)}\n`), // a comment that merely ends like ours
        Buffer.from(`${other.replace(/ \S+$/, ' phobos-1234-2')}`), // no final newline
      ]);
      writeFileSync(file, before, { mode: 0o640 });
      expect(await installAuthorizedKey(file, line(), COMMENT)).to.equal('replaced');
      const after = readFileSync(file);
      const expected = Buffer.from(before.toString('latin1')
        .replace(authorizedKeysLine(key.public, 'old command', COMMENT), line()) + '\n', 'latin1');
      expect(after.equals(expected), after.toString('latin1')).to.equal(true);
      expect(mode(file), 'the operator chose 0640').to.equal(0o640);
    });

    it('ssh - installAuthorizedKey collapses duplicate lines of its comment into one', async () => {
      const file = tmp.file('authorized_keys');
      const old = authorizedKeysLine(key.public, 'old', COMMENT);
      writeFileSync(file, `${old}\nkeep\n${old}\n`);
      expect(await installAuthorizedKey(file, line(), COMMENT)).to.equal('replaced');
      expect(readFileSync(file, 'utf8')).to.equal(`${line()}\nkeep\n`);
    });

    it('ssh - installAuthorizedKey refuses a line that does not carry its comment', async () => {
      expect(await rejection(installAuthorizedKey(tmp.file('ak'), line(), 'phobos-other'))).to.match(/does not end with its comment phobos-other/);
    });

    it('ssh - removeAuthorizedKey drops its lines only, and is fine with a missing file', async () => {
      const file = tmp.file('authorized_keys');
      writeFileSync(file, `first\n${line()}\nlast\n`);
      expect(await removeAuthorizedKey(file, COMMENT)).to.equal(true);
      expect(readFileSync(file, 'utf8')).to.equal('first\nlast\n');
      expect(await removeAuthorizedKey(file, COMMENT)).to.equal(false);
      expect(await removeAuthorizedKey(tmp.file('nope'), COMMENT)).to.equal(false);
    });

    it('ssh - no temporary files are left behind', async () => {
      mkdirSync(tmp.file('d'));
      const file = tmp.file('d/authorized_keys');
      await installAuthorizedKey(file, line(), COMMENT);
      await installAuthorizedKey(file, line('other'), COMMENT);
      await removeAuthorizedKey(file, COMMENT);
      expect(readdirSync(tmp.file('d'))).to.deep.equal(['authorized_keys']);
    });
  });

  describe('known_hosts', () => {
    const alpha = newKey('root@alpha').public;
    const beta = newKey('root@beta').public;
    const blob = (line: string): Buffer => parsePublicKeyLine(line).blob;

    it('ssh - writeKnownHosts writes [addr]:port except for port 22, and parses back', async () => {
      const file = tmp.file('ssh/known_hosts');
      await writeKnownHosts(file, [{ address: '10.0.0.1', port: 22, keyLine: alpha }, { address: '10.0.0.2', port: 2222, keyLine: beta }]);
      const lines = readFileSync(file, 'utf8').split('\n');
      expect(lines[1]).to.equal(`10.0.0.1 ${alpha.split(' ').slice(0, 2).join(' ')}`);
      expect(lines[2]).to.equal(`[10.0.0.2]:2222 ${beta.split(' ').slice(0, 2).join(' ')}`);
      expect(mode(file)).to.equal(0o644);
      const entries = parseKnownHosts(readFileSync(file, 'utf8'));
      expect(entries.map((e) => e.patterns)).to.deep.equal([['10.0.0.1'], ['[10.0.0.2]:2222']]);
      expect(knownHostKeyFor(entries, '10.0.0.2', 2222)).to.deep.equal(blob(beta));
      expect(knownHostKeyFor(entries, '10.0.0.2', 22)).to.equal(undefined);
      expect(knownHostKeyFor(entries, '10.0.0.1', 22)).to.deep.equal(blob(alpha));
    });

    it('ssh - writeKnownHosts does not rewrite an unchanged file', async () => {
      const file = tmp.file('known_hosts');
      const entries = [{ address: 'beta.example', port: 22, keyLine: beta }];
      await writeKnownHosts(file, entries);
      const inode = statSync(file).ino;
      await writeKnownHosts(file, entries);
      expect(statSync(file).ino).to.equal(inode);
      expect(await rejection(writeKnownHosts(file, [{ address: 'a b', port: 22, keyLine: beta }]))).to.match(/not an address/);
      expect(await rejection(writeKnownHosts(file, [{ address: 'b', port: 0, keyLine: beta }]))).to.match(/not a TCP port/);
    });

    it('ssh - OpenSSH finds the hosts in the written file (ssh-keygen -F)', async function () {
      if (!hasSshKeygen) this.skip();
      const file = tmp.file('known_hosts');
      await writeKnownHosts(file, [{ address: '10.0.0.2', port: 2222, keyLine: beta }]);
      const out = spawnSync('ssh-keygen', ['-F', '[10.0.0.2]:2222', '-f', file], { encoding: 'utf8' });
      expect(out.status, out.stderr).to.equal(0);
      expect(out.stdout).to.include(beta.split(' ')[1]);
    });

    it('ssh - parseKnownHosts: comments, hashed names, markers, and bad lines by number', () => {
      const salt = Buffer.from('0123456789abcdef0123');
      const hash = createHmac('sha1', salt).update('[10.0.0.3]:2222').digest('base64');
      const [type, base64] = alpha.split(' ');
      const [btype, bbase64] = beta.split(' ');
      const text = [
        '# comment', '', `|1|${salt.toString('base64')}|${hash} ${type} ${base64}`,
        `a,b ${btype} ${bbase64}`, `@revoked b ${btype} ${bbase64}`, `@cert-authority * ${type} ${base64}`,
      ].join('\n');
      const entries = parseKnownHosts(text);
      expect(entries).to.have.length(4);
      expect(entries[1]?.lineNumber).to.equal(4);
      expect(knownHostKeyFor(entries, '10.0.0.3', 2222)).to.deep.equal(blob(alpha));
      expect(knownHostKeyFor(entries, 'a', 22)).to.deep.equal(blob(beta));
      expect(knownHostKeyFor(entries, 'b', 22), 'revoked').to.equal(undefined);
      expect(knownHostKeyFor(entries, 'zzz', 22), 'cert-authority is not a pin').to.equal(undefined);
      expect(() => parseKnownHosts('# ok\nhost ssh-ed25519')).to.throw(/^known_hosts line 2: expected "host type base64"/);
      expect(() => parseKnownHosts(`h ssh-rsa ${base64}`)).to.throw(/^known_hosts line 1: public key says ssh-rsa/);
    });
  });
});
