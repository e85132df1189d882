/**
 * Warm free memory before a timed phase. A VM with free page reporting (the dev VM boots
 * with page_reporting) hands its guest's free pages back to the host, and the first
 * touch of such a page costs far more than of a recently freed one: dd of 512 MiB into a
 * new file ran at 590-600 MB/s on cold pages and 7.4-8 GB/s just after 1 GiB was freed
 * (2026-12-03). Without this, whichever side of a comparison ran first took the warm
 * pages and the other paid for the cold ones.
 */
import { open, rm } from 'node:fs/promises';

/** Write and delete `bytes` of a scratch file, so that its page-cache pages are freed warm. */
export async function warmFreeMemory(file: string, bytes: number): Promise<void> {
  const f = await open(file, 'w');
  try {
    const chunk = Buffer.alloc(1 << 20, 1);
    for (let at = 0; at < bytes; at += chunk.length) await f.write(chunk, 0, chunk.length, at);
  } finally {
    await f.close();
    await rm(file);
  }
}
