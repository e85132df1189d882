/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * phobos_log.h - encode, decode, verify and scan Phobos log records.
 *
 * Shared by phobos.ko and the userspace addon. The caller supplies crc32c and the
 * codecs through struct phobos_log_env and every buffer the core writes to. See
 * phobos_log_format.h for the layout and docs/log-format.md for the rules.
 *
 * Typical reader loop over a buffer that holds a file from offset base to its end:
 *
 *	struct phobos_scan s;
 *	for (;;) {
 *		phobos_log_scan(env, buf + pos, len - pos, base + pos, seq + 1, true,
 *				scratch, sizeof(scratch), &s);
 *		if (s.kind != PHOBOS_SCAN_RECORD)
 *			break;		// END, TORN or CORRUPT: s.offset says where
 *		apply(&s.rec, s.data);
 *		pos += s.size;
 *		seq = s.rec.seq;
 *	}
 */
#ifndef PHOBOS_LOG_H
#define PHOBOS_LOG_H

#include "phobos_log_format.h"

/*
 * What the environment provides. The kernel plugs in crc32c() and lib/lz4, lib/zstd;
 * the addon plugs in its SSE4.2 crc32c and dlopen'ed liblz4/libzstd.
 */
struct phobos_log_env {
	/* zlib-style crc32c: pass 0 to start, feed the result back to continue. */
	u32 (*crc32c)(u32 crc, const void *data, size_t len);
	/*
	 * Compress len bytes of src into at most cap bytes of dst. Returns the compressed
	 * size, or 0 if it does not fit in cap or the codec is unavailable. May be NULL.
	 */
	size_t (*compress)(void *ctx, unsigned int codec, const void *src, size_t len,
			   void *dst, size_t cap);
	/*
	 * Decompress len bytes of src into exactly out_len bytes of dst. Returns 0 on
	 * success, PL_E_CODEC_UNAVAILABLE if the codec is missing, PL_E_DECOMPRESS on any
	 * other failure. May be NULL (then only uncompressed records decode).
	 */
	int (*decompress)(void *ctx, unsigned int codec, const void *src, size_t len,
			  void *dst, size_t out_len);
	void *ctx;	/* per-thread codec state, passed back to compress/decompress */
};

/* Result codes; phobos_log_strerror() gives the same words in the kernel and the addon. */
enum phobos_log_err {
	PL_OK = 0,
	PL_E_TRUNCATED,		/* the bytes end inside the record */
	PL_E_MAGIC,		/* got: magic found, want: PHOBOS_LOG_MAGIC */
	PL_E_VERSION,		/* got: version found, want: PHOBOS_LOG_VERSION */
	PL_E_HEADER_CRC,	/* got: stored header crc, want: computed */
	PL_E_TYPE,		/* got: type found */
	PL_E_CODEC,		/* got: codec found */
	PL_E_LENGTH,		/* got: length, want: the limit or the expected value */
	PL_E_STORED_LEN,	/* got: stored_len, want: what the type and codec allow */
	PL_E_DEV_RANGE,		/* got: dev_offset; dev_offset + length overflows */
	PL_E_SYNCED_POS,	/* got: synced_pos, want: at most the record's own offset */
	PL_E_RESERVED,		/* got: the non-zero flags or reserved word */
	PL_E_PADDING,		/* got: offset of a non-zero padding byte */
	PL_E_SEQ,		/* got: seq found, want: seq expected */
	PL_E_DECOMPRESS,	/* got: codec; the stored payload does not decompress */
	PL_E_PAYLOAD_CRC,	/* got: crc32c computed, want: payload_crc stored */
	PL_E_CODEC_UNAVAILABLE,	/* got: codec the environment cannot decompress */
	PL_E_NOSPACE,		/* got: bytes given, want: bytes needed (caller buffer) */
	PL_E_INVAL,		/* a bad argument from the caller */
	PL_E_COUNT
};

/* Why a record was refused, with the values a message needs. */
struct phobos_log_fault {
	int err;	/* enum phobos_log_err */
	u64 got;
	u64 want;
};

const char *phobos_log_strerror(int err);

enum phobos_scan_kind {
	PHOBOS_SCAN_RECORD,	/* a verified record */
	PHOBOS_SCAN_END,	/* no bytes left and the end of the file is known */
	PHOBOS_SCAN_NEED_MORE,	/* bytes end inside a record; size says how many more */
	PHOBOS_SCAN_BAD,	/* damaged record, tail not judged (end of file unknown) */
	PHOBOS_SCAN_TORN,	/* torn tail from offset: discard it */
	PHOBOS_SCAN_CORRUPT,	/* corruption at offset: stop, report, apply nothing */
};

struct phobos_scan {
	enum phobos_scan_kind kind;
	u64 offset;		/* log offset of the record, or of the failure */
	u64 size;		/* RECORD: bytes on disk; NEED_MORE: bytes still missing */
	struct phobos_rec rec;	/* RECORD: the decoded header */
	const u8 *data;		/* RECORD of type WRITE: uncompressed payload, rec.length bytes */
	struct phobos_log_fault fault;	/* BAD, TORN, CORRUPT: why */
	u64 evidence;		/* CORRUPT: offset of the header whose synced_pos > offset,
				 * or offset itself when the fault is its own proof */
};

/*
 * Encode one record into out (cap bytes). In: rec->type, length, seq, stamp_ns,
 * dev_offset, synced_pos. Out: rec->codec, stored_len, payload_crc, and *out_len.
 * A WRITE is compressed with codec only when that saves space after padding.
 */
int phobos_log_encode(const struct phobos_log_env *env, struct phobos_rec *rec,
		      const void *data, unsigned int codec, u8 *out, size_t cap,
		      size_t *out_len);

/*
 * Encode only the 64-byte header of an uncompressed record whose payload the caller
 * writes itself (zero-copy vectored writes). rec->payload_crc must already hold the
 * crc32c of the data; codec and stored_len are set here.
 */
int phobos_log_encode_header(const struct phobos_log_env *env, struct phobos_rec *rec,
			     u8 out[PHOBOS_LOG_HEADER_SIZE]);

/* Decode and check the 64 header bytes at p, which sit at log offset offset. */
int phobos_log_decode_header(const struct phobos_log_env *env, const u8 *p, u64 offset,
			     struct phobos_rec *rec, struct phobos_log_fault *fault);

/*
 * Scan the record at buf (log offset base, len bytes available). expect_seq 0 means
 * "any". at_eof says buf ends at the end of the file. scratch (at least
 * PHOBOS_LOG_MAX_LEN bytes) receives decompressed payloads. Never returns TORN or
 * CORRUPT: a damaged record is BAD, to be judged with phobos_log_find_evidence().
 */
void phobos_log_scan_one(const struct phobos_log_env *env, const u8 *buf, size_t len,
			 u64 base, u64 expect_seq, bool at_eof, u8 *scratch,
			 size_t scratch_cap, struct phobos_scan *out);

/*
 * Look in buf (log offset base, len bytes) for a record header at an 8-byte-aligned
 * offset past bad_offset whose synced_pos is beyond bad_offset: proof that the bytes at
 * bad_offset were once durable. Returns true and sets *at if found.
 */
bool phobos_log_find_evidence(const struct phobos_log_env *env, const u8 *buf, size_t len,
			      u64 base, u64 bad_offset, u64 *at);

/*
 * True if the fault itself proves corruption, whatever follows: a non-zero magic that
 * is not ours, or an unknown version (a torn append cannot produce either).
 */
bool phobos_log_fault_is_proof(const struct phobos_log_fault *f);

/*
 * phobos_log_scan_one() plus the torn-tail rule over the rest of buf: a BAD record
 * becomes CORRUPT when buf holds evidence, TORN when it holds none and at_eof is set.
 */
void phobos_log_scan(const struct phobos_log_env *env, const u8 *buf, size_t len,
		     u64 base, u64 expect_seq, bool at_eof, u8 *scratch, size_t scratch_cap,
		     struct phobos_scan *out);

#endif /* PHOBOS_LOG_H */
