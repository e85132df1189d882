/**
 * A thin runner for systemctl and systemd-analyze. The binaries can be pointed elsewhere
 * (PHOBOS_SYSTEMCTL, PHOBOS_SYSTEMD_ANALYZE) so tests use a fake systemctl that records
 * its calls, while rendering, files and verification stay real.
 */
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface SystemctlOptions {
  /** The systemctl binary (env PHOBOS_SYSTEMCTL; default /usr/bin/systemctl). */
  readonly binary?: string;
  /** Attempts for start/stop before giving up (default 5). */
  readonly attempts?: number;
  /** First retry delay, doubled each time, ms (default 200). */
  readonly backoffMs?: number;
  /**
   * Longest one call may take, ms (default 120000). A systemctl call from inside a unit
   * can wait on a job that waits on that unit; the timeout breaks such a deadlock.
   */
  readonly callTimeoutMs?: number;
}

export function systemctlBinary(env: NodeJS.ProcessEnv = process.env): string {
  return env['PHOBOS_SYSTEMCTL'] || '/usr/bin/systemctl';
}

export function systemdAnalyzeBinary(env: NodeJS.ProcessEnv = process.env): string {
  return env['PHOBOS_SYSTEMD_ANALYZE'] || '/usr/bin/systemd-analyze';
}

/** Run a program, collect its output; never throws for a non-zero exit. */
export function run(binary: string, args: readonly string[], timeoutMs = 120_000, env: NodeJS.ProcessEnv = process.env): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL', env });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => resolve({ code: 127, stdout, stderr: stderr + `${binary}: ${e.message}\n` }));
    child.on('close', (code, signal) => resolve({
      code: code ?? 128, stdout, stderr: signal ? `${stderr}${binary} ${args.join(' ')}: killed by ${signal} (timeout?)\n` : stderr,
    }));
  });
}

export class Systemctl {
  readonly binary: string;
  private readonly attempts: number;
  private readonly backoffMs: number;
  private readonly callTimeoutMs: number;

  constructor(options: SystemctlOptions = {}) {
    this.binary = options.binary ?? systemctlBinary();
    this.attempts = options.attempts ?? 5;
    this.backoffMs = options.backoffMs ?? 200;
    this.callTimeoutMs = options.callTimeoutMs ?? 120_000;
  }

  /** One call, no retry. */
  call(...args: string[]): Promise<RunResult> {
    return run(this.binary, args, this.callTimeoutMs);
  }

  daemonReload(): Promise<RunResult> {
    return this.withRetry(['daemon-reload']);
  }

  /**
   * Start units. `--job-mode=fail` first, so a stop job in flight is not silently replaced
   * (MARS's lesson); a failed unit gets `reset-failed` before the next attempt.
   */
  start(units: readonly string[]): Promise<RunResult> {
    return this.withRetry(['start', '--job-mode=fail', ...units], units);
  }

  stop(units: readonly string[]): Promise<RunResult> {
    return this.withRetry(['stop', '--job-mode=fail', ...units], units);
  }

  enableRuntime(units: readonly string[]): Promise<RunResult> {
    return this.withRetry(['enable', '--runtime', ...units]);
  }

  /** Retry with doubling backoff; the last attempt drops `--job-mode=fail`. */
  private async withRetry(args: readonly string[], resetUnits: readonly string[] = []): Promise<RunResult> {
    let result: RunResult = { code: 1, stdout: '', stderr: '' };
    for (let attempt = 1; attempt <= this.attempts; attempt++) {
      const last = attempt === this.attempts;
      result = await this.call(...(last ? args.filter((a) => a !== '--job-mode=fail') : args));
      if (result.code === 0 || last) return result;
      if (resetUnits.length > 0) await this.call('reset-failed', ...resetUnits);
      await sleep(this.backoffMs * 2 ** (attempt - 1));
    }
    return result;
  }
}
