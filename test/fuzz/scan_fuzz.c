// SPDX-License-Identifier: GPL-2.0-only
/*
 * scan_fuzz.c - libFuzzer target for the log format core.
 *
 * For every input: walk it with the scanner (as a final file and as a growing one) and
 * check the scanner's promises; encode a record from the input and check it scans back
 * identical; check both crc32c implementations agree. Built and run by
 * test/fuzz/fuzz.test.ts with clang -fsanitize=fuzzer,address,undefined.
 */
#include <stdlib.h>
#include <string.h>

#include "../../addon/crc32c.h"
#include "../../kernel/common/phobos_log.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static const struct phobos_log_env env = { phobos_crc32c, NULL, NULL, NULL };
static u8 scratch[PHOBOS_LOG_MAX_LEN];
static u8 encoded[PHOBOS_LOG_HEADER_SIZE + 4096 + 8];

static void walk(const u8 *data, size_t size, bool at_eof)
{
	struct phobos_scan s;
	size_t pos = 0;
	u64 seq = 0;

	for (;;) {
		phobos_log_scan(&env, data + pos, size - pos, pos, seq ? seq + 1 : 0, at_eof, scratch,
				sizeof(scratch), &s);
		CHECK(s.offset == pos);
		if (s.kind != PHOBOS_SCAN_RECORD)
			break;
		CHECK(s.size >= PHOBOS_LOG_HEADER_SIZE && s.size <= size - pos && s.size % 8 == 0);
		CHECK(s.rec.type != PHOBOS_REC_WRITE || s.data != NULL);
		CHECK(seq == 0 || s.rec.seq == seq + 1);
		CHECK(s.rec.synced_pos <= pos);
		seq = s.rec.seq;
		pos += s.size;
	}
	switch (s.kind) {
	case PHOBOS_SCAN_END:
		CHECK(at_eof && pos == size);
		break;
	case PHOBOS_SCAN_NEED_MORE:
		CHECK(!at_eof && s.size > 0);
		break;
	case PHOBOS_SCAN_TORN:
		CHECK(at_eof);
		break;
	case PHOBOS_SCAN_CORRUPT:
		CHECK(s.evidence >= pos && s.evidence <= size);
		break;
	case PHOBOS_SCAN_BAD:
		CHECK(!at_eof);
		break;
	default:
		CHECK(0);
	}
}

static void round_trip(const u8 *data, size_t size)
{
	struct phobos_rec rec = { 0 };
	struct phobos_scan s;
	size_t len = 0;

	if (size < 9)
		return;
	rec.type = (data[0] % 3) + 1;
	rec.dev_offset = data[1] * 4096ull;
	rec.stamp_ns = data[2];
	rec.seq = 1 + data[3];
	rec.length = rec.type == PHOBOS_REC_SYNC_MARK ? 0 : (u32)((size - 8) > 4096 ? 4096 : size - 8);
	if (rec.type == PHOBOS_REC_ZERO && rec.length == 0)
		return;
	CHECK(phobos_log_encode(&env, &rec, data + 8, PHOBOS_CODEC_NONE, encoded, sizeof(encoded),
				&len) == PL_OK);
	phobos_log_scan(&env, encoded, len, 0, rec.seq, true, scratch, sizeof(scratch), &s);
	CHECK(s.kind == PHOBOS_SCAN_RECORD && s.size == len);
	CHECK(s.rec.length == rec.length && s.rec.dev_offset == rec.dev_offset && s.rec.seq == rec.seq);
	CHECK(rec.type != PHOBOS_REC_WRITE || memcmp(s.data, data + 8, rec.length) == 0);
}

int LLVMFuzzerTestOneInput(const u8 *data, size_t size)
{
	static int ready;

	if (!ready) {
		phobos_crc32c_init();
		ready = 1;
	}
	walk(data, size, true);
	walk(data, size, false);
	round_trip(data, size);
	CHECK(phobos_crc32c_portable(0, data, size) == phobos_crc32c_sse42(0, data, size));
	return 0;
}
