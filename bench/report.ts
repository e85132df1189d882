/** The one output format of every benchmark. */
export interface Figure {
  bench: string;
  value: number;
  unit: string;
  baseline: number | null;
  ratio: number | null;
  /** What the baseline is, and anything else worth knowing. */
  note?: string;
}

export function report(bench: string, value: number, unit: string, baseline: number | null, note?: string): void {
  const round = (x: number) => Number(x.toPrecision(4));
  const figure: Figure = {
    bench,
    value: round(value),
    unit,
    baseline: baseline === null ? null : round(baseline),
    ratio: baseline ? round(value / baseline) : null,
    ...(note ? { note } : {}),
  };
  console.log(JSON.stringify(figure));
}

/** Best (smallest) wall time of fn over runs, in seconds. */
export async function bestSeconds(runs: number, fn: () => Promise<unknown> | unknown): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    best = Math.min(best, (performance.now() - t) / 1000);
  }
  return best;
}
