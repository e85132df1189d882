// SPDX-License-Identifier: GPL-2.0-only
/*
 * phobos_log.c - the log format core: encode, decode, verify, scan.
 *
 * Plain C over phobos_types.h only; compiled into phobos.ko and into the addon. Byte
 * order is converted in the get/put helpers below and nowhere else.
 */
#include "phobos_log.h"

static const char *const phobos_log_errstr[PL_E_COUNT] = {
	[PL_OK] = "ok",
	[PL_E_TRUNCATED] = "record truncated",
	[PL_E_MAGIC] = "bad magic",
	[PL_E_VERSION] = "unsupported format version",
	[PL_E_HEADER_CRC] = "header crc32c mismatch",
	[PL_E_TYPE] = "unknown record type",
	[PL_E_CODEC] = "unknown codec",
	[PL_E_LENGTH] = "bad length",
	[PL_E_STORED_LEN] = "bad stored length",
	[PL_E_DEV_RANGE] = "device range overflows",
	[PL_E_SYNCED_POS] = "synced position beyond the record",
	[PL_E_RESERVED] = "reserved field not zero",
	[PL_E_PADDING] = "padding not zero",
	[PL_E_SEQ] = "sequence number out of order",
	[PL_E_DECOMPRESS] = "payload does not decompress",
	[PL_E_PAYLOAD_CRC] = "payload crc32c mismatch",
	[PL_E_CODEC_UNAVAILABLE] = "codec unavailable",
	[PL_E_NOSPACE] = "buffer too small",
	[PL_E_INVAL] = "invalid argument",
};

const char *phobos_log_strerror(int err)
{
	if (err < 0 || err >= PL_E_COUNT)
		return "unknown error";
	return phobos_log_errstr[err];
}

/* ---- little-endian field access ---- */

static inline u16 get_le16(const u8 *p)
{
	return (u16)(p[0] | (p[1] << 8));
}

static inline u32 get_le32(const u8 *p)
{
	return (u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24);
}

static inline u64 get_le64(const u8 *p)
{
	return (u64)get_le32(p) | ((u64)get_le32(p + 4) << 32);
}

static inline void put_le16(u8 *p, u16 v)
{
	p[0] = (u8)v;
	p[1] = (u8)(v >> 8);
}

static inline void put_le32(u8 *p, u32 v)
{
	p[0] = (u8)v;
	p[1] = (u8)(v >> 8);
	p[2] = (u8)(v >> 16);
	p[3] = (u8)(v >> 24);
}

static inline void put_le64(u8 *p, u64 v)
{
	put_le32(p, (u32)v);
	put_le32(p + 4, (u32)(v >> 32));
}

static inline int fail(struct phobos_log_fault *f, int err, u64 got, u64 want)
{
	f->err = err;
	f->got = got;
	f->want = want;
	return err;
}

static inline u32 padded_len(u32 n)
{
	return (n + PHOBOS_LOG_ALIGN - 1) & ~(PHOBOS_LOG_ALIGN - 1);
}

/* ---- header ---- */

/* Field rules that need no crc: type, codec and the lengths must agree. */
static int check_fields(const struct phobos_rec *r, u64 offset, struct phobos_log_fault *f)
{
	if (r->type < PHOBOS_REC_WRITE || r->type > PHOBOS_REC_SYNC_MARK)
		return fail(f, PL_E_TYPE, r->type, 0);
	if (r->codec >= PHOBOS_CODEC_COUNT)
		return fail(f, PL_E_CODEC, r->codec, 0);
	if (r->type == PHOBOS_REC_WRITE) {
		if (r->length == 0 || r->length > PHOBOS_LOG_MAX_LEN)
			return fail(f, PL_E_LENGTH, r->length, PHOBOS_LOG_MAX_LEN);
		if (r->codec == PHOBOS_CODEC_NONE && r->stored_len != r->length)
			return fail(f, PL_E_STORED_LEN, r->stored_len, r->length);
		if (r->codec != PHOBOS_CODEC_NONE &&
		    (r->stored_len == 0 || padded_len(r->stored_len) >= padded_len(r->length)))
			return fail(f, PL_E_STORED_LEN, r->stored_len, r->length);
	} else {
		if (r->codec != PHOBOS_CODEC_NONE)
			return fail(f, PL_E_CODEC, r->codec, PHOBOS_CODEC_NONE);
		if (r->stored_len != 0)
			return fail(f, PL_E_STORED_LEN, r->stored_len, 0);
		if (r->payload_crc != 0)
			return fail(f, PL_E_PAYLOAD_CRC, r->payload_crc, 0);
		if (r->type == PHOBOS_REC_ZERO &&
		    (r->length == 0 || r->length > PHOBOS_LOG_MAX_LEN))
			return fail(f, PL_E_LENGTH, r->length, PHOBOS_LOG_MAX_LEN);
		if (r->type == PHOBOS_REC_SYNC_MARK && r->length != 0)
			return fail(f, PL_E_LENGTH, r->length, 0);
	}
	if (r->dev_offset + r->length < r->dev_offset)
		return fail(f, PL_E_DEV_RANGE, r->dev_offset, r->length);
	if (r->synced_pos > offset)
		return fail(f, PL_E_SYNCED_POS, r->synced_pos, offset);
	if (r->seq == 0)
		return fail(f, PL_E_SEQ, 0, 1);
	return PL_OK;
}

static void put_header(const struct phobos_log_env *env, const struct phobos_rec *r, u8 *p)
{
	put_le32(p + PL_OFF_MAGIC, PHOBOS_LOG_MAGIC);
	put_le16(p + PL_OFF_VERSION, PHOBOS_LOG_VERSION);
	p[PL_OFF_TYPE] = r->type;
	p[PL_OFF_CODEC] = r->codec;
	put_le32(p + PL_OFF_STORED_LEN, r->stored_len);
	put_le32(p + PL_OFF_LENGTH, r->length);
	put_le64(p + PL_OFF_SEQ, r->seq);
	put_le64(p + PL_OFF_STAMP, r->stamp_ns);
	put_le64(p + PL_OFF_DEV_OFFSET, r->dev_offset);
	put_le64(p + PL_OFF_SYNCED_POS, r->synced_pos);
	put_le32(p + PL_OFF_PAYLOAD_CRC, r->payload_crc);
	put_le32(p + PL_OFF_FLAGS, 0);
	put_le32(p + PL_OFF_RESERVED, 0);
	put_le32(p + PL_OFF_HEADER_CRC, env->crc32c(0, p, PL_OFF_HEADER_CRC));
}

int phobos_log_decode_header(const struct phobos_log_env *env, const u8 *p, u64 offset,
			     struct phobos_rec *r, struct phobos_log_fault *f)
{
	u32 magic = get_le32(p + PL_OFF_MAGIC);
	u16 version = get_le16(p + PL_OFF_VERSION);
	u32 stored_crc, crc;

	/* Magic and version first, so a foreign or newer file says so plainly. */
	if (magic != PHOBOS_LOG_MAGIC)
		return fail(f, PL_E_MAGIC, magic, PHOBOS_LOG_MAGIC);
	if (version != PHOBOS_LOG_VERSION)
		return fail(f, PL_E_VERSION, version, PHOBOS_LOG_VERSION);
	stored_crc = get_le32(p + PL_OFF_HEADER_CRC);
	crc = env->crc32c(0, p, PL_OFF_HEADER_CRC);
	if (stored_crc != crc)
		return fail(f, PL_E_HEADER_CRC, stored_crc, crc);
	if (get_le32(p + PL_OFF_FLAGS) != 0)
		return fail(f, PL_E_RESERVED, get_le32(p + PL_OFF_FLAGS), 0);
	if (get_le32(p + PL_OFF_RESERVED) != 0)
		return fail(f, PL_E_RESERVED, get_le32(p + PL_OFF_RESERVED), 0);

	r->type = p[PL_OFF_TYPE];
	r->codec = p[PL_OFF_CODEC];
	r->stored_len = get_le32(p + PL_OFF_STORED_LEN);
	r->length = get_le32(p + PL_OFF_LENGTH);
	r->seq = get_le64(p + PL_OFF_SEQ);
	r->stamp_ns = get_le64(p + PL_OFF_STAMP);
	r->dev_offset = get_le64(p + PL_OFF_DEV_OFFSET);
	r->synced_pos = get_le64(p + PL_OFF_SYNCED_POS);
	r->payload_crc = get_le32(p + PL_OFF_PAYLOAD_CRC);
	return check_fields(r, offset, f);
}

/* ---- encode ---- */

int phobos_log_encode_header(const struct phobos_log_env *env, struct phobos_rec *rec,
			     u8 out[PHOBOS_LOG_HEADER_SIZE])
{
	struct phobos_log_fault f;

	rec->codec = PHOBOS_CODEC_NONE;
	rec->stored_len = rec->type == PHOBOS_REC_WRITE ? rec->length : 0;
	if (check_fields(rec, rec->synced_pos, &f) != PL_OK)
		return PL_E_INVAL;
	put_header(env, rec, out);
	return PL_OK;
}

/* Try to compress into the payload area; true if the result is stored compressed. */
static bool try_compress(const struct phobos_log_env *env, struct phobos_rec *rec,
			 const void *data, unsigned int codec, u8 *payload)
{
	size_t budget, n;

	if (codec == PHOBOS_CODEC_NONE || !env->compress)
		return false;
	/* Worth it only if the padded result is smaller than the padded raw data. */
	if (padded_len(rec->length) <= PHOBOS_LOG_ALIGN)
		return false;
	budget = padded_len(rec->length) - PHOBOS_LOG_ALIGN;
	n = env->compress(env->ctx, codec, data, rec->length, payload, budget);
	if (n == 0 || n > budget)
		return false;
	rec->codec = (u8)codec;
	rec->stored_len = (u32)n;
	return true;
}

int phobos_log_encode(const struct phobos_log_env *env, struct phobos_rec *rec,
		      const void *data, unsigned int codec, u8 *out, size_t cap,
		      size_t *out_len)
{
	struct phobos_log_fault f;
	u8 *payload = out + PHOBOS_LOG_HEADER_SIZE;
	u64 size;

	if (codec >= PHOBOS_CODEC_COUNT)
		return PL_E_CODEC;
	rec->codec = PHOBOS_CODEC_NONE;
	rec->stored_len = rec->type == PHOBOS_REC_WRITE ? rec->length : 0;
	rec->payload_crc = 0;
	if (rec->type == PHOBOS_REC_WRITE && rec->length && rec->length <= PHOBOS_LOG_MAX_LEN)
		rec->payload_crc = env->crc32c(0, data, rec->length);
	if (check_fields(rec, rec->synced_pos, &f) != PL_OK)
		return PL_E_INVAL;
	size = phobos_log_record_size(rec->stored_len);
	if (cap < size)
		return PL_E_NOSPACE;

	if (rec->type == PHOBOS_REC_WRITE && !try_compress(env, rec, data, codec, payload))
		pl_memcpy(payload, data, rec->length);
	size = phobos_log_record_size(rec->stored_len);
	pl_memset(payload + rec->stored_len, 0, size - PHOBOS_LOG_HEADER_SIZE - rec->stored_len);
	put_header(env, rec, out);
	*out_len = (size_t)size;
	return PL_OK;
}

/* ---- verify and scan ---- */

static int verify_payload(const struct phobos_log_env *env, const struct phobos_rec *r,
			  const u8 *stored, u8 *scratch, size_t scratch_cap,
			  const u8 **data, struct phobos_log_fault *f)
{
	u32 pad_end = padded_len(r->stored_len);
	u32 i, crc;
	int rc;

	for (i = r->stored_len; i < pad_end; i++)
		if (stored[i] != 0)
			return fail(f, PL_E_PADDING, i, 0);
	*data = NULL;
	if (r->type != PHOBOS_REC_WRITE)
		return PL_OK;
	if (r->codec == PHOBOS_CODEC_NONE) {
		*data = stored;
	} else {
		if (scratch_cap < r->length)
			return fail(f, PL_E_NOSPACE, scratch_cap, r->length);
		if (!env->decompress)
			return fail(f, PL_E_CODEC_UNAVAILABLE, r->codec, 0);
		rc = env->decompress(env->ctx, r->codec, stored, r->stored_len, scratch,
				     r->length);
		if (rc == PL_E_CODEC_UNAVAILABLE)
			return fail(f, PL_E_CODEC_UNAVAILABLE, r->codec, 0);
		if (rc != 0)
			return fail(f, PL_E_DECOMPRESS, r->codec, 0);
		*data = scratch;
	}
	crc = env->crc32c(0, *data, r->length);
	if (crc != r->payload_crc)
		return fail(f, PL_E_PAYLOAD_CRC, crc, r->payload_crc);
	return PL_OK;
}

static void scan_need_more(struct phobos_scan *out, bool at_eof, u64 have, u64 need)
{
	if (at_eof) {
		out->kind = PHOBOS_SCAN_BAD;
		fail(&out->fault, PL_E_TRUNCATED, have, need);
	} else {
		out->kind = PHOBOS_SCAN_NEED_MORE;
		out->size = need - have;
	}
}

/* Magic and version of a header whose first len (>= 6) bytes are present. */
static int check_prefix(const u8 *p, size_t len, struct phobos_log_fault *f)
{
	u32 magic = get_le32(p + PL_OFF_MAGIC);

	(void)len;
	if (magic != PHOBOS_LOG_MAGIC && magic != 0)
		return fail(f, PL_E_MAGIC, magic, PHOBOS_LOG_MAGIC);
	if (magic == PHOBOS_LOG_MAGIC && get_le16(p + PL_OFF_VERSION) != PHOBOS_LOG_VERSION)
		return fail(f, PL_E_VERSION, get_le16(p + PL_OFF_VERSION), PHOBOS_LOG_VERSION);
	return PL_OK;
}

void phobos_log_scan_one(const struct phobos_log_env *env, const u8 *buf, size_t len,
			 u64 base, u64 expect_seq, bool at_eof, u8 *scratch,
			 size_t scratch_cap, struct phobos_scan *out)
{
	struct phobos_rec *r = &out->rec;
	u64 size;

	pl_memset(out, 0, sizeof(*out));
	out->offset = base;
	if (len == 0) {
		if (at_eof)
			out->kind = PHOBOS_SCAN_END;
		else
			scan_need_more(out, false, 0, PHOBOS_LOG_HEADER_SIZE);
		return;
	}
	if (len < PHOBOS_LOG_HEADER_SIZE) {
		/* A partial header still shows a foreign magic or version (see the proof rule). */
		if (len >= PL_OFF_TYPE && check_prefix(buf, len, &out->fault) != PL_OK) {
			out->kind = PHOBOS_SCAN_BAD;
			return;
		}
		scan_need_more(out, at_eof, len, PHOBOS_LOG_HEADER_SIZE);
		return;
	}
	out->kind = PHOBOS_SCAN_BAD;
	if (phobos_log_decode_header(env, buf, base, r, &out->fault) != PL_OK)
		return;
	size = phobos_log_record_size(r->stored_len);
	if (len < size) {
		scan_need_more(out, at_eof, len, size);
		return;
	}
	if (expect_seq && r->seq != expect_seq) {
		fail(&out->fault, PL_E_SEQ, r->seq, expect_seq);
		return;
	}
	if (verify_payload(env, r, buf + PHOBOS_LOG_HEADER_SIZE, scratch, scratch_cap,
			   &out->data, &out->fault) != PL_OK)
		return;
	out->kind = PHOBOS_SCAN_RECORD;
	out->size = size;
}

bool phobos_log_find_evidence(const struct phobos_log_env *env, const u8 *buf, size_t len,
			      u64 base, u64 bad_offset, u64 *at)
{
	struct phobos_log_fault f;
	struct phobos_rec r;
	u64 first = (bad_offset + PHOBOS_LOG_ALIGN) & ~(u64)(PHOBOS_LOG_ALIGN - 1);
	u64 rel;

	if (first < base)
		first = (base + PHOBOS_LOG_ALIGN - 1) & ~(u64)(PHOBOS_LOG_ALIGN - 1);
	for (rel = first - base; rel + PHOBOS_LOG_HEADER_SIZE <= len; rel += PHOBOS_LOG_ALIGN) {
		/* Cheap magic test first: this runs over whole tails of files. */
		if (get_le32(buf + rel) != PHOBOS_LOG_MAGIC)
			continue;
		if (phobos_log_decode_header(env, buf + rel, base + rel, &r, &f) != PL_OK)
			continue;
		if (r.synced_pos > bad_offset) {
			*at = base + rel;
			return true;
		}
	}
	return false;
}

bool phobos_log_fault_is_proof(const struct phobos_log_fault *f)
{
	/*
	 * A torn append leaves each sector holding new bytes or zeros. The magic and the
	 * version share the first 8 bytes of a record, so a crash shows them either right or
	 * zero: any other magic, or the right magic with another version, was never a torn
	 * write of ours.
	 */
	return (f->err == PL_E_MAGIC && f->got != 0) || f->err == PL_E_VERSION;
}

void phobos_log_scan(const struct phobos_log_env *env, const u8 *buf, size_t len,
		     u64 base, u64 expect_seq, bool at_eof, u8 *scratch, size_t scratch_cap,
		     struct phobos_scan *out)
{
	phobos_log_scan_one(env, buf, len, base, expect_seq, at_eof, scratch, scratch_cap, out);
	if (out->kind != PHOBOS_SCAN_BAD)
		return;
	if (phobos_log_fault_is_proof(&out->fault)) {
		out->kind = PHOBOS_SCAN_CORRUPT;
		out->evidence = base;
	} else if (phobos_log_find_evidence(env, buf, len, base, base, &out->evidence))
		out->kind = PHOBOS_SCAN_CORRUPT;
	else if (at_eof)
		out->kind = PHOBOS_SCAN_TORN;
}
