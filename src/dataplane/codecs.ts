/**
 * Log payload codecs. lz4 and zstd come from the host's runtime libraries (liblz4.so.1,
 * libzstd.so.1), loaded when the addon starts; a missing library makes only that codec
 * unavailable.
 */
import { CodecUnavailableError } from './errors.js';
import { native } from './native.js';
import { CODEC_IDS, type Codec, type CodecStatus } from './types.js';

export const CODECS: readonly Codec[] = ['none', 'lz4', 'zstd'];

export function isCodec(name: string): name is Codec {
  return (CODECS as readonly string[]).includes(name);
}

/** Load status of a codec on this host. */
export function codecStatus(codec: Codec): CodecStatus {
  return native.codecInfo()[codec];
}

/** Throw a clear error unless codec can be used here. */
export function requireCodec(codec: Codec): void {
  const status = codecStatus(codec);
  if (!status.available) {
    throw new CodecUnavailableError(
      `codec ${codec} is unavailable: ${status.error}; install the library ` +
      `(Debian: ${codec === 'lz4' ? 'liblz4-1' : 'libzstd1'}) or choose another codec`);
  }
}

/** Compress and decompress data in records of recordBytes; times both on a worker thread. */
export async function codecRoundTrip(codec: Exclude<Codec, 'none'>, data: Uint8Array, recordBytes: number) {
  requireCodec(codec);
  return native.codecRoundTrip(CODEC_IDS[codec], data, recordBytes);
}
