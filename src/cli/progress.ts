/**
 * Progress for long work: a bar on a terminal (stderr), nothing otherwise, so pipes and
 * --json output stay clean. Numbers for scripts go in the command's --json result.
 *
 * @example
 * const bar = new ProgressBar('replay', totalBytes);
 * bar.update(doneBytes);
 * bar.done();
 */
import { formatBytes } from './format.js';

export class ProgressBar {
  private lastDraw = 0;
  private readonly started = Date.now();
  private readonly enabled: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.enabled = Boolean(stream.isTTY);
  }

  update(done: number): void {
    const now = Date.now();
    if (!this.enabled || now - this.lastDraw < 100) return;
    this.lastDraw = now;
    this.draw(done);
  }

  done(): void {
    if (!this.enabled) return;
    this.draw(this.total);
    this.stream.write('\n');
  }

  private draw(done: number): void {
    const width = 30;
    const fraction = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const filled = Math.round(fraction * width);
    const seconds = Math.max(0.001, (Date.now() - this.started) / 1000);
    const rate = `${formatBytes(done / seconds)}/s`;
    this.stream.write(`\r${this.label.padEnd(10)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` +
      `${(fraction * 100).toFixed(0).padStart(3)}%  ${formatBytes(done)} of ${formatBytes(this.total)}  ${rate}   `);
  }
}
