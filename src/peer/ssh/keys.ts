/**
 * SSH key files for the peer transport: the cluster key, `authorized_keys` lines that pin
 * it to `marsadm peer-serve`, and pinned host keys. Pure file helpers: every write goes to
 * a temporary file in the same directory and is renamed into place, so a crash leaves the
 * old file or the new one, never half of one; calling any of them twice changes nothing.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { chmod, link, mkdir, open, readFile, realpath, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import ssh2 from 'ssh2';

export const CLUSTER_KEY_FILE = 'cluster_ed25519';
export const DEFAULT_HOST_KEY_PATH = '/etc/ssh/ssh_host_ed25519_key.pub';

/** A public key as written in `*.pub`, `authorized_keys` and `known_hosts`. */
export interface PublicKey {
  /** `ssh-ed25519`, `ssh-rsa`, ... */
  readonly type: string;
  /** The SSH wire-format key (what ssh2's hostVerifier receives). */
  readonly blob: Buffer;
  /** Whatever followed the key on its line ('' when nothing). */
  readonly comment: string;
}

export interface ClusterKey {
  readonly privateKeyPath: string;
  /** `ssh-ed25519 AAAA... comment`, as in `cluster_ed25519.pub`. */
  readonly publicKeyLine: string;
}

// ---------------------------------------------------------------------------------------
// Atomic file writes

/** Write `data` to `file` through a temporary file and rename; `mode` is set explicitly (umask-proof). */
async function writeFileAtomic(file: string, data: string | Buffer, mode: number, owner?: { uid: number; gid: number }): Promise<void> {
  const tmp = await writeTemp(file, data, mode, owner);
  try {
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await syncDir(path.dirname(file));
}

/**
 * Like writeFileAtomic but never replaces an existing file (link(2) fails with EEXIST):
 * two processes creating the same key race safely, the first one wins. Returns false if
 * the file already existed.
 */
async function createFileAtomic(file: string, data: string | Buffer, mode: number): Promise<boolean> {
  const tmp = await writeTemp(file, data, mode);
  try {
    await link(tmp, file);
    await syncDir(path.dirname(file));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

async function writeTemp(file: string, data: string | Buffer, mode: number, owner?: { uid: number; gid: number }): Promise<string> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const handle = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, mode);
  try {
    await handle.chmod(mode);
    if (owner) await handle.chown(owner.uid, owner.gid);
    await handle.writeFile(data);
    await handle.sync();
  } catch (e) {
    await handle.close();
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await handle.close();
  return tmp;
}

/** Make the rename itself durable. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY).catch(() => null);
  if (!handle) return;
  try {
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  } finally {
    await handle.close();
  }
}

/** Create `dir` as 0700 if missing; an existing dir keeps its mode (the operator may have chosen it). */
async function ensurePrivateDir(dir: string): Promise<void> {
  const made = await mkdir(dir, { recursive: true, mode: 0o700 });
  if (made !== undefined) await chmod(dir, 0o700);
}

async function readIfExists(file: string): Promise<Buffer | null> {
  try {
    return await readFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

// ---------------------------------------------------------------------------------------
// Public keys and fingerprints

/** Parse `ssh-ed25519 AAAA... [comment]`; throws a one-line reason. */
export function parsePublicKeyLine(text: string): PublicKey {
  const trimmed = text.trim();
  if (trimmed === '') throw new Error('empty public key; expected "ssh-ed25519 AAAA... comment"');
  if (trimmed.includes('\n')) throw new Error('public key spans several lines; expected one line "ssh-ed25519 AAAA... comment"');
  const match = /^(\S+)\s+(\S+)(?:\s+(.*))?$/.exec(trimmed);
  if (!match) throw new Error(`not a public key line: "${shorten(trimmed)}"; expected "ssh-ed25519 AAAA... comment"`);
  const [, type = '', base64 = '', comment = ''] = match;
  const blob = decodeBase64Strict(base64);
  if (!blob) throw new Error(`public key "${shorten(trimmed)}" has invalid base64 after the type ${type}`);
  const embedded = blobKeyType(blob);
  if (embedded !== type) {
    throw new Error(`public key says ${type} but its data is ${embedded ?? 'not an SSH key'}: "${shorten(trimmed)}"`);
  }
  if (type === 'ssh-ed25519' && blob.length !== ED25519_BLOB_LENGTH) {
    throw new Error(`ed25519 public key "${shorten(trimmed)}" is ${blob.length} bytes, not ${ED25519_BLOB_LENGTH} (truncated or malformed)`);
  }
  return { type, blob, comment };
}

/** `type base64 [comment]`, the inverse of parsePublicKeyLine. */
export function formatPublicKey(key: { type: string; blob: Buffer; comment?: string }): string {
  const words = [key.type, key.blob.toString('base64')];
  if (key.comment) words.push(key.comment);
  return words.join(' ');
}

/** `SHA256:<base64 without padding>`, exactly what `ssh-keygen -lf` prints. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type string an SSH wire-format key starts with (uint32 length + name). */
function blobKeyType(blob: Buffer): string | null {
  if (blob.length < 4) return null;
  const length = blob.readUInt32BE(0);
  if (length === 0 || length > 64 || 4 + length > blob.length) return null;
  const type = blob.toString('latin1', 4, 4 + length);
  return /^[\x21-\x7e]+$/.test(type) ? type : null;
}

function decodeBase64Strict(text: string): Buffer | null {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 !== 0) return null;
  return Buffer.from(text, 'base64');
}

function shorten(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** This host's sshd key (published so peers can pin it). */
export async function readHostPublicKey(file: string = DEFAULT_HOST_KEY_PATH): Promise<PublicKey> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read sshd host key ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); install openssh-server or name the key file`);
  }
  try {
    return parsePublicKeyLine(text);
  } catch (e) {
    throw new Error(`sshd host key ${file}: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------
// The cluster key

/** An ed25519 key in SSH wire format: string "ssh-ed25519" + string of 32 bytes. */
const ED25519_BLOB_LENGTH = 4 + 11 + 4 + 32;

/**
 * A new ed25519 key pair in OpenSSH format (`private` PEM text, `public` line).
 * ssh2 1.17's generateKeyPairSync('ed25519') strips leading zero bytes off the public
 * key, so about 1 pair in 256 comes out with a 31-byte key that neither ssh2 nor OpenSSH
 * reads (mscdex/ssh2 issues 1390, 1513); such a pair is thrown away and made again.
 */
export function generateEd25519KeyPair(comment: string): { private: string; public: string } {
  for (let attempt = 0; attempt < 32; attempt++) {
    const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment });
    if (isWholeEd25519Pair(pair)) return pair;
  }
  throw new Error('ssh2 made 32 malformed ed25519 keys in a row; check the installed ssh2 version');
}

function isWholeEd25519Pair(pair: { private: string; public: string }): boolean {
  const privateKey = ssh2.utils.parseKey(pair.private);
  const publicKey = ssh2.utils.parseKey(pair.public);
  if (privateKey instanceof Error || publicKey instanceof Error || Array.isArray(privateKey) || Array.isArray(publicKey)) return false;
  const blob = privateKey.getPublicSSH();
  return blob.length === ED25519_BLOB_LENGTH && blob.equals(publicKey.getPublicSSH());
}

/** The public line of a private key text; throws if the text is not a usable private key. */
function publicLineOfPrivateKey(privateKeyText: string, source: string, fix: string): string {
  const parsed = ssh2.utils.parseKey(privateKeyText);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error) {
    throw new Error(`${source} is not a usable SSH private key (${key instanceof Error ? key.message : 'empty'}); ${fix}`);
  }
  if (!key.isPrivateKey()) throw new Error(`${source} holds a public key where the private cluster key belongs; ${fix}`);
  return formatPublicKey({ type: key.type, blob: key.getPublicSSH(), comment: key.comment });
}

const FIX_LOCAL_KEY = 'move it away, then run marsadm join-cluster again (or create-cluster for a new cluster)';

/**
 * The cluster key in `dir`, made if missing (ed25519, 0600, with its `.pub`). An existing
 * key is kept; a missing or stale `.pub` is rewritten from it.
 */
export async function ensureClusterKey(dir: string, comment = 'phobos-cluster'): Promise<ClusterKey> {
  await ensurePrivateDir(dir);
  const privateKeyPath = path.join(dir, CLUSTER_KEY_FILE);
  if ((await readIfExists(privateKeyPath)) === null) {
    const pair = generateEd25519KeyPair(comment);
    await createFileAtomic(privateKeyPath, withNewline(pair.private), 0o600);
  }
  return syncPublicHalf(privateKeyPath);
}

/** Read the private key (whoever wrote it) and make `<key>.pub` match it. */
async function syncPublicHalf(privateKeyPath: string): Promise<ClusterKey> {
  const privateText = await readFile(privateKeyPath, 'utf8');
  const derived = publicLineOfPrivateKey(privateText, privateKeyPath, FIX_LOCAL_KEY);
  const pubPath = `${privateKeyPath}.pub`;
  const existing = (await readIfExists(pubPath))?.toString('utf8');
  if (existing !== undefined && samePublicKey(existing, derived)) return { privateKeyPath, publicKeyLine: existing.trim() };
  await writeFileAtomic(pubPath, `${derived}\n`, 0o644);
  return { privateKeyPath, publicKeyLine: derived };
}

function samePublicKey(lineA: string, lineB: string): boolean {
  try {
    return parsePublicKeyLine(lineA).blob.equals(parsePublicKeyLine(lineB).blob);
  } catch {
    return false;
  }
}

/**
 * Install a cluster key received from a peer (join-cluster). The same key already there
 * is fine; a different one is refused unless `force`, because replacing it would cut this
 * host off from the cluster it is in now.
 */
export async function installClusterKey(
  dir: string, privateKeyText: string, publicKeyLine: string, opts: { force?: boolean } = {},
): Promise<ClusterKey> {
  const received = parsePublicKeyLine(publicKeyLine);
  const derived = parsePublicKeyLine(publicLineOfPrivateKey(privateKeyText, 'the received cluster key', 'ask the peer again'));
  if (!derived.blob.equals(received.blob)) {
    throw new Error(`the received cluster key's private half (${fingerprint(derived.blob)}) does not match its public line (${fingerprint(received.blob)}); ask the peer again`);
  }
  await ensurePrivateDir(dir);
  const privateKeyPath = path.join(dir, CLUSTER_KEY_FILE);
  const existing = (await readIfExists(privateKeyPath))?.toString('utf8');
  if (existing !== undefined && !opts.force) {
    const current = parsePublicKeyLine(publicLineOfPrivateKey(existing, privateKeyPath, FIX_LOCAL_KEY));
    if (!current.blob.equals(received.blob)) {
      throw new Error(`${privateKeyPath} holds another cluster key (${fingerprint(current.blob)}, received ${fingerprint(received.blob)}); this host is in another cluster: leave it first, or force the replacement`);
    }
  }
  if (existing !== withNewline(privateKeyText)) await writeFileAtomic(privateKeyPath, withNewline(privateKeyText), 0o600);
  const pubPath = `${privateKeyPath}.pub`;
  const line = publicKeyLine.trim();
  if ((await readIfExists(pubPath))?.toString('utf8') !== `${line}\n`) await writeFileAtomic(pubPath, `${line}\n`, 0o644);
  return { privateKeyPath, publicKeyLine: line };
}

function withNewline(text: string): string {
  return text.endsWith('\n') ? text : `${text}\n`;
}

// ---------------------------------------------------------------------------------------
// authorized_keys

/**
 * `restrict,command="<forcedCommand>" ssh-ed25519 AAAA... <comment>`: the key may run that
 * one command and nothing else (no pty, no forwarding, no agent, no X11, no rc file).
 * The comment names the line so it can be replaced or removed later.
 */
export function authorizedKeysLine(publicKeyLine: string, forcedCommand: string, comment: string): string {
  const key = parsePublicKeyLine(publicKeyLine);
  checkComment(comment);
  return `restrict,command="${quoteOptionValue(forcedCommand)}" ${key.type} ${key.blob.toString('base64')} ${comment}`;
}

/**
 * sshd reads an option value up to the next unescaped `"`, and `\"` is its only escape (a
 * backslash before anything else is kept as is). So escaping every `"` is exact, except
 * for a trailing backslash, which would swallow the closing quote.
 */
function quoteOptionValue(command: string): string {
  if (command.trim() === '') throw new Error('forced command is empty; name the command the key may run');
  if (/[\r\n\0]/.test(command)) throw new Error('forced command contains a line break or NUL; authorized_keys holds one key per line');
  if (command.endsWith('\\')) throw new Error('forced command ends with a backslash, which authorized_keys cannot quote; drop it');
  return command.replaceAll('"', '\\"');
}

function checkComment(comment: string): void {
  if (!/^[\x21-\x7e]+$/.test(comment)) {
    throw new Error(`authorized_keys comment "${comment}" must be one word of printable ASCII (it identifies the line), e.g. phobos-<uuid>`);
  }
}

/** Does this authorized_keys line (latin1 text, no newline) end with `comment`? */
function carriesComment(line: string, comment: string): boolean {
  const text = line.replace(/\r$/, '').trimEnd();
  if (text.trimStart().startsWith('#')) return false;
  return text.endsWith(comment) && /\s/.test(text.charAt(text.length - comment.length - 1));
}

/**
 * Add `line` to the authorized_keys `file`, replacing any line that carries `comment`.
 * Every other line is kept byte for byte. Creates the file (0600) and its dir (0700) if
 * missing; an existing file keeps its mode and owner. Returns what it did.
 */
export async function installAuthorizedKey(file: string, line: string, comment: string): Promise<'added' | 'replaced' | 'unchanged'> {
  checkComment(comment);
  if (/[\r\n]/.test(line)) throw new Error('authorized_keys line contains a line break; pass one line');
  const wanted = Buffer.from(line, 'utf8').toString('latin1');
  if (!carriesComment(wanted, comment)) throw new Error(`authorized_keys line does not end with its comment ${comment}; make it with authorizedKeysLine()`);
  const target = await resolveExisting(file);
  await ensurePrivateDir(path.dirname(target));
  const old = await readIfExists(target);
  const lines = old === null ? [] : splitLines(old);
  const matching = lines.filter((l) => carriesComment(l, comment));
  if (matching.length === 1 && matching[0] === wanted) return 'unchanged';
  let placed = false;
  const next: string[] = [];
  for (const l of lines) {
    if (!carriesComment(l, comment)) next.push(l);
    else if (!placed) {
      next.push(wanted);
      placed = true;
    }
  }
  if (!placed) next.push(wanted);
  await writeKeepingOwnership(target, joinLines(next), 0o600);
  return matching.length > 0 ? 'replaced' : 'added';
}

/** Remove every line carrying `comment`; true if one was there. A missing file is fine. */
export async function removeAuthorizedKey(file: string, comment: string): Promise<boolean> {
  checkComment(comment);
  const target = await resolveExisting(file);
  const old = await readIfExists(target);
  if (old === null) return false;
  const lines = splitLines(old);
  const kept = lines.filter((l) => !carriesComment(l, comment));
  if (kept.length === lines.length) return false;
  await writeKeepingOwnership(target, joinLines(kept), 0o600);
  return true;
}

/** Follow a symlinked authorized_keys so the rename replaces the file, not the link. */
async function resolveExisting(file: string): Promise<string> {
  try {
    return await realpath(file);
  } catch {
    return file;
  }
}

/** Lines as latin1 strings (one char per byte, so bytes survive unchanged), without their '\n'. */
function splitLines(content: Buffer): string[] {
  const text = content.toString('latin1');
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Inverse of splitLines: every line ends with '\n' (an unterminated last line gets one). */
function joinLines(lines: string[]): Buffer {
  return Buffer.from(lines.map((l) => `${l}\n`).join(''), 'latin1');
}

async function writeKeepingOwnership(file: string, data: Buffer, newFileMode: number): Promise<void> {
  const before = await stat(file).catch(() => null);
  if (!before) return writeFileAtomic(file, data, newFileMode);
  const owner = process.getuid?.() === 0 ? { uid: before.uid, gid: before.gid } : undefined;
  await writeFileAtomic(file, data, before.mode & 0o7777, owner);
}

// ---------------------------------------------------------------------------------------
// known_hosts

export interface KnownHostInput {
  /** IP address or DNS name, as the transport connects to it. */
  readonly address: string;
  readonly port: number;
  /** `ssh-ed25519 AAAA...` (a comment is dropped). */
  readonly keyLine: string;
}

export interface KnownHostEntry {
  /** `@revoked`, `@cert-authority`, or null for a plain entry. */
  readonly marker: string | null;
  /** The host field split on ',': `addr`, `[addr]:port`, or hashed `|1|salt|hmac`. */
  readonly patterns: readonly string[];
  readonly type: string;
  readonly blob: Buffer;
  /** 1-based, for messages. */
  readonly lineNumber: number;
}

/** `addr` for port 22, else `[addr]:port`, as OpenSSH names hosts in known_hosts. */
export function knownHostName(address: string, port: number): string {
  return port === 22 ? address : `[${address}]:${port}`;
}

/** Write `file` with exactly these entries (0644; rewritten only if it changes). */
export async function writeKnownHosts(file: string, entries: readonly KnownHostInput[]): Promise<void> {
  const lines = ['# written by phobos from the cluster tree (ips/hostkey-*); edits are overwritten'];
  for (const entry of entries) {
    if (!/^[^\s,#[\]]+$/.test(entry.address)) throw new Error(`known_hosts address "${entry.address}" is not an address or host name`);
    if (!Number.isInteger(entry.port) || entry.port < 1 || entry.port > 65535) throw new Error(`known_hosts port ${entry.port} for ${entry.address} is not a TCP port`);
    const key = parsePublicKeyLine(entry.keyLine);
    lines.push(`${knownHostName(entry.address, entry.port)} ${key.type} ${key.blob.toString('base64')}`);
  }
  const content = `${lines.join('\n')}\n`;
  await ensurePrivateDir(path.dirname(file));
  if ((await readIfExists(file))?.toString('utf8') === content) return;
  await writeFileAtomic(file, content, 0o644);
}

/** Parse known_hosts text; blank lines and `#` comments are skipped, a bad line throws naming its number. */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const words = line.split(/\s+/);
    const marker = words[0]?.startsWith('@') ? (words.shift() ?? null) : null;
    const [hosts, type, base64] = words;
    if (!hosts || !type || !base64) throw new Error(`known_hosts line ${index + 1}: expected "host type base64", got "${shorten(line)}"`);
    let key: PublicKey;
    try {
      key = parsePublicKeyLine(`${type} ${base64}`);
    } catch (e) {
      throw new Error(`known_hosts line ${index + 1}: ${(e as Error).message}`);
    }
    entries.push({ marker, patterns: hosts.split(','), type: key.type, blob: key.blob, lineNumber: index + 1 });
  });
  return entries;
}

/**
 * The key pinned for `address:port`, or undefined. Plain and hashed (`|1|`) names match;
 * wildcards are not supported; a matching `@revoked` entry pins nothing.
 */
export function knownHostKeyFor(entries: readonly KnownHostEntry[], address: string, port: number): Buffer | undefined {
  const name = knownHostName(address, port);
  const matching = entries.filter((e) => e.marker !== '@cert-authority' && e.patterns.some((p) => patternNames(p, name)));
  const revoked = matching.filter((e) => e.marker === '@revoked').map((e) => e.blob);
  return matching.find((e) => e.marker === null && !revoked.some((r) => r.equals(e.blob)))?.blob;
}

function patternNames(pattern: string, name: string): boolean {
  if (!pattern.startsWith('|1|')) return pattern === name;
  const [, , salt, hash] = pattern.split('|');
  if (!salt || !hash) return false;
  return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
}
