// SPDX-License-Identifier: GPL-2.0-only
/*
 * phobos_logcheck.c - host-side checker for logs written by phobos.ko.
 *
 *   phobos_logcheck LOG [--replay IMG] [--expect-clean]
 *
 * Scans LOG with the shared format core (kernel/common/phobos_log.c, compiled
 * unchanged) using a portable crc32c and a small LZ4 block decoder written here, and
 * prints one summary line. --replay applies every WRITE/ZERO record, in order, to the
 * existing file IMG (the "replays byte-identically" check of the kernel tier).
 * --expect-clean fails unless the log ends with a SYNC_MARK and nothing after it.
 * Exit 0 when the scan reached the end (or a torn tail without --expect-clean).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "phobos_log.h"

static uint32_t crc_table[256];

static void crc_init(void)
{
	uint32_t i, j, c;

	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = (c >> 1) ^ ((c & 1) ? 0x82f63b78u : 0);
		crc_table[i] = c;
	}
}

/* zlib-style: 0 starts, the result feeds the next call. */
static u32 sw_crc32c(u32 crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* LZ4 block format decoder: sequences of [token][literals][offset][match]. */
static int lz4_block_decode(const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen)
{
	const uint8_t *ip = src, *iend = src + slen;
	uint8_t *op = dst, *oend = dst + dlen;

	while (ip < iend) {
		unsigned int token = *ip++;
		size_t lit = token >> 4, mlen, off;

		if (lit == 15) {
			uint8_t b;

			do {
				if (ip >= iend)
					return -1;
				b = *ip++;
				lit += b;
			} while (b == 255);
		}
		if ((size_t)(iend - ip) < lit || (size_t)(oend - op) < lit)
			return -1;
		memcpy(op, ip, lit);
		ip += lit;
		op += lit;
		if (ip == iend)
			break;		/* the last sequence carries literals only */
		if (iend - ip < 2)
			return -1;
		off = ip[0] | (ip[1] << 8);
		ip += 2;
		if (off == 0 || off > (size_t)(op - dst))
			return -1;
		mlen = token & 15;
		if (mlen == 15) {
			uint8_t b;

			do {
				if (ip >= iend)
					return -1;
				b = *ip++;
				mlen += b;
			} while (b == 255);
		}
		mlen += 4;
		if ((size_t)(oend - op) < mlen)
			return -1;
		while (mlen--) {	/* byte by byte: the match may overlap its output */
			*op = *(op - off);
			op++;
		}
	}
	return op == oend ? 0 : -1;
}

static int sw_decompress(void *ctx, unsigned int codec, const void *src, size_t len,
			 void *dst, size_t out_len)
{
	(void)ctx;
	if (codec != PHOBOS_CODEC_LZ4)
		return PL_E_CODEC_UNAVAILABLE;
	return lz4_block_decode(src, len, dst, out_len) ? PL_E_DECOMPRESS : 0;
}

int main(int argc, char **argv)
{
	struct phobos_log_env env = { .crc32c = sw_crc32c, .decompress = sw_decompress };
	uint64_t pos = 0, seq = 0, n[4] = { 0 }, lz4 = 0;
	int expect_clean = 0, img = -1, last_type = 0, i, rc = 0;
	const char *outcome = "end";
	struct phobos_scan s;
	struct stat st;
	uint8_t *buf, *scratch, *zeros;
	FILE *f;

	if (argc < 2) {
		fprintf(stderr, "usage: phobos_logcheck LOG [--replay IMG] [--expect-clean]\n");
		return 2;
	}
	for (i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--expect-clean")) {
			expect_clean = 1;
		} else if (!strcmp(argv[i], "--replay") && i + 1 < argc) {
			img = open(argv[++i], O_WRONLY);
			if (img < 0) {
				perror(argv[i]);
				return 2;
			}
		}
	}
	crc_init();
	f = fopen(argv[1], "rb");
	if (!f || fstat(fileno(f), &st)) {
		perror(argv[1]);
		return 2;
	}
	buf = malloc(st.st_size + 1);
	scratch = malloc(PHOBOS_LOG_MAX_LEN);
	zeros = calloc(1, PHOBOS_LOG_MAX_LEN);
	if (!buf || !scratch || !zeros || fread(buf, 1, st.st_size, f) != (size_t)st.st_size) {
		fprintf(stderr, "%s: read failed\n", argv[1]);
		return 2;
	}
	for (;;) {
		phobos_log_scan(&env, buf + pos, st.st_size - pos, pos, seq + 1, true, scratch,
				PHOBOS_LOG_MAX_LEN, &s);
		if (s.kind != PHOBOS_SCAN_RECORD)
			break;
		n[s.rec.type]++;
		lz4 += s.rec.codec == PHOBOS_CODEC_LZ4;
		last_type = s.rec.type;
		if (img >= 0 && s.rec.type == PHOBOS_REC_WRITE &&
		    pwrite(img, s.data, s.rec.length, s.rec.dev_offset) != (ssize_t)s.rec.length) {
			perror("replay write");
			return 2;
		}
		if (img >= 0 && s.rec.type == PHOBOS_REC_ZERO &&
		    pwrite(img, zeros, s.rec.length, s.rec.dev_offset) != (ssize_t)s.rec.length) {
			perror("replay zero");
			return 2;
		}
		seq = s.rec.seq;
		pos += s.size;
	}
	if (s.kind == PHOBOS_SCAN_TORN)
		outcome = "torn";
	else if (s.kind == PHOBOS_SCAN_CORRUPT)
		outcome = "corrupt";
	else if (s.kind != PHOBOS_SCAN_END)
		outcome = "incomplete";
	printf("{\"file\":\"%s\",\"outcome\":\"%s\",\"offset\":%" PRIu64 ",\"size\":%lld,"
	       "\"records\":%" PRIu64 ",\"writes\":%" PRIu64 ",\"zeroes\":%" PRIu64
	       ",\"sync_marks\":%" PRIu64 ",\"lz4\":%" PRIu64 ",\"last_type\":%d",
	       argv[1], outcome, s.offset, (long long)st.st_size, seq, n[1], n[2], n[3], lz4,
	       last_type);
	if (s.kind == PHOBOS_SCAN_TORN || s.kind == PHOBOS_SCAN_CORRUPT)
		printf(",\"reason\":\"%s\",\"got\":%" PRIu64 ",\"want\":%" PRIu64,
		       phobos_log_strerror(s.fault.err), s.fault.got, s.fault.want);
	printf("}\n");
	if (s.kind == PHOBOS_SCAN_CORRUPT || (s.kind != PHOBOS_SCAN_END && s.kind != PHOBOS_SCAN_TORN))
		rc = 1;
	if (expect_clean && (s.kind != PHOBOS_SCAN_END || last_type != PHOBOS_REC_SYNC_MARK))
		rc = 1;
	if (img >= 0 && close(img))
		rc = 2;
	return rc;
}
