/**
 * A private OpenSSH sshd for one demo or test host: its own host keys, config,
 * authorized_keys file and log, never the machine's sshd or /etc/ssh. Used by
 * `npm run demo -- --ssh` (on 127.0.0.1, one port per host) and by the system test tier
 * (one per network namespace). Why each config line is there: docs/system-tier.md.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import ssh2 from 'ssh2';

import { generateEd25519KeyPair, parsePublicKeyLine } from '../peer/ssh/keys.js';

export const SSHD = '/usr/sbin/sshd';

export interface PrivateSshdConfig {
  /** Scratch directory: host keys, sshd_config, pid file, log, HOME of sessions. */
  readonly dir: string;
  readonly address: string;
  readonly port: number;
  /** Absolute path; sshd reads it on every login, so it may change while sshd runs. */
  readonly authorizedKeysFile: string;
}

export interface PrivateSshdFiles {
  readonly configFile: string;
  readonly logFile: string;
  /** `ssh-ed25519 AAAA...` (what a peer pins). */
  readonly hostKeyLine: string;
  /** The same key in SSH wire format (what ssh2's hostVerifier sees). */
  readonly hostKeyBlob: Buffer;
  /** The host key's public half as a file, what `--host-key` takes. */
  readonly hostKeyPubFile: string;
  /**
   * sshd's second host key (ECDSA P-256), there because a real sshd has several: a client
   * must ask for the type it pinned, or it may be shown another key.
   */
  readonly ecdsaHostKeyLine: string;
}

/** Write host keys and sshd_config into cfg.dir; start sshd with `-D -f configFile -E logFile`. */
export async function preparePrivateSshd(cfg: PrivateSshdConfig): Promise<PrivateSshdFiles> {
  await mkdir(path.join(cfg.dir, 'home'), { recursive: true, mode: 0o700 });
  const ed25519 = await writeHostKey(cfg.dir, 'ed25519');
  const ecdsa = await writeHostKey(cfg.dir, 'ecdsa');
  const configFile = path.join(cfg.dir, 'sshd_config');
  await writeFile(configFile, sshdConfig(cfg));
  // sshd's privilege-separation dir; the openssh-server service makes it, but none runs here.
  if (process.getuid?.() === 0) await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  return {
    configFile, logFile: path.join(cfg.dir, 'sshd.log'),
    hostKeyLine: ed25519.hostKeyLine, hostKeyBlob: ed25519.hostKeyBlob,
    hostKeyPubFile: path.join(cfg.dir, 'ssh_host_ed25519_key.pub'),
    ecdsaHostKeyLine: ecdsa.hostKeyLine,
  };
}

async function writeHostKey(dir: string, type: 'ed25519' | 'ecdsa'): Promise<{ hostKeyLine: string; hostKeyBlob: Buffer }> {
  const pair = type === 'ecdsa'
    ? ssh2.utils.generateKeyPairSync('ecdsa', { bits: 256, comment: 'phobos-private-sshd' })
    : generateEd25519KeyPair('phobos-private-sshd');
  const file = path.join(dir, `ssh_host_${type}_key`);
  await writeFile(file, pair.private.endsWith('\n') ? pair.private : `${pair.private}\n`, { mode: 0o600 });
  await writeFile(`${file}.pub`, `${pair.public}\n`, { mode: 0o644 });
  const key = parsePublicKeyLine(pair.public);
  return { hostKeyLine: `${key.type} ${key.blob.toString('base64')}`, hostKeyBlob: key.blob };
}

function sshdConfig(cfg: PrivateSshdConfig): string {
  return [
    `Port ${cfg.port}`,
    `ListenAddress ${cfg.address}`,
    `HostKey ${path.join(cfg.dir, 'ssh_host_ed25519_key')}`,
    `HostKey ${path.join(cfg.dir, 'ssh_host_ecdsa_key')}`,
    `PidFile ${path.join(cfg.dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${cfg.authorizedKeysFile}`,
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'UsePAM no',
    'StrictModes no',
    'MaxSessions 64',
    'MaxStartups 100:30:200',
    'LogLevel VERBOSE',
    `SetEnv HOME=${path.join(cfg.dir, 'home')}`,
    '',
  ].join('\n');
}

/** sshd logs "Server listening on ADDR port PORT" after listen(); fail fast if it exits first. */
export async function waitForListening(child: ChildProcess, logFile: string, address: string, port: number): Promise<void> {
  let exited: string | null = null;
  child.once('exit', (code, sig) => (exited = sig ?? `exit ${code}`));
  const ready = `Server listening on ${address} port ${port}`;
  const deadline = Date.now() + 10000;
  for (;;) {
    const log = await readFile(logFile, 'utf8').catch(() => '');
    if (log.includes(ready)) return;
    if (exited !== null || Date.now() > deadline) {
      const last = log.trim().split('\n').slice(-3).join(' | ');
      throw new Error(`sshd on ${address}:${port} ${exited !== null ? `stopped (${exited})` : 'did not listen within 10 s'}; log ${logFile}: ${last || '(empty)'}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}
