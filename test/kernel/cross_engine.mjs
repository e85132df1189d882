// Cross-engine checks for the kernel tier, using the userspace engine (dist/, the addon).
//
//   node cross_engine.mjs write LOG DATA_FILE LEN CODEC   userspace log of DATA_FILE[0, LEN)
//        in 64 KiB records at their own offsets, plus a zero range, sealed: phobos.ko must
//        replay it in a guest (module replays the userspace engine's log)
//   node cross_engine.mjs replay LOG IMG                  userspace replay of a log written
//        by phobos.ko onto IMG (compared with the module's backing by the caller)
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

const root = resolve(new URL('../..', import.meta.url).pathname);
const dp = await import(pathToFileURL(`${root}/dist/src/dataplane/index.js`).href);
const [mode, ...args] = process.argv.slice(2);

if (mode === 'write') {
  const [log, dataFile, lenText, codec] = args;
  const len = Number(lenText);
  const data = readFileSync(dataFile);
  const w = await dp.LogWriter.open(log, { codec });
  for (let off = 0; off < len; off += 65536) {
    await w.write(off, data.subarray(off, Math.min(off + 65536, len)));
  }
  // the last 64 KiB of the range read as zeros afterwards
  await w.zero(len - 65536, 65536, { durable: true });
  await w.close();
  console.log(`userspace log ${log}: ${len} bytes in 64 KiB records (${codec}), zeroed the last 64 KiB`);
} else if (mode === 'replay') {
  const [log, img] = args;
  const r = await dp.replayLog(log, img);
  console.log(`userspace replay of ${log}: ${JSON.stringify(r, (k, v) => (typeof v === 'bigint' ? Number(v) : v))}`);
} else {
  console.error('usage: cross_engine.mjs write LOG DATA_FILE LEN CODEC | replay LOG IMG');
  process.exit(2);
}
