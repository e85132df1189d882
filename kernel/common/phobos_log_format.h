/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * phobos_log_format.h - the Phobos transaction log format, version 1.
 *
 * This header is the single source of truth for the on-disk format; docs/log-format.md
 * explains the reasoning, the torn-tail rule and a worked trace. The same files compile
 * into phobos.ko and into the userspace addon, so the core takes no locks, allocates
 * nothing (callers pass every buffer) and reaches crc32c and the codecs only through
 * struct phobos_log_env.
 *
 * A log file is a sequence of records, no file header. Each record is 8-byte aligned:
 *
 *   [ 64-byte header ][ payload: stored_len bytes ][ zero pad to 8 ]
 *
 *   off size field        meaning
 *     0   4  magic        PHOBOS_LOG_MAGIC, the bytes "PHLG"
 *     4   2  version      PHOBOS_LOG_VERSION
 *     6   1  type         enum phobos_rec_type
 *     7   1  codec        enum phobos_codec of the stored payload
 *     8   4  stored_len   payload bytes after the header, before padding
 *    12   4  length       device bytes covered (<= PHOBOS_LOG_MAX_LEN)
 *    16   8  seq          record number within the file, first is 1
 *    24   8  stamp_ns     Lamport stamp, ns since the epoch
 *    32   8  dev_offset   byte offset on the device
 *    40   8  synced_pos   log offset durable (fdatasync done) when this was encoded
 *    48   4  payload_crc  crc32c of the uncompressed payload, 0 if none
 *    52   4  flags        reserved for growth, 0 in version 1
 *    56   4  reserved     reserved for growth, 0 in version 1
 *    60   4  header_crc   crc32c of bytes 0..59
 *
 * Every field is little endian. Byte order is converted only in phobos_log.c's
 * put/get helpers.
 */
#ifndef PHOBOS_LOG_FORMAT_H
#define PHOBOS_LOG_FORMAT_H

#include "phobos_types.h"

#define PHOBOS_LOG_MAGIC	0x474c4850u	/* "PHLG" read as a little-endian u32 */
#define PHOBOS_LOG_VERSION	1u
#define PHOBOS_LOG_HEADER_SIZE	64u
#define PHOBOS_LOG_ALIGN	8u
/* Largest device range one record covers; bigger writes become several records. */
#define PHOBOS_LOG_MAX_LEN	(4u << 20)
/* Largest record on disk: header plus an uncompressed maximal payload. */
#define PHOBOS_LOG_MAX_RECORD	(PHOBOS_LOG_HEADER_SIZE + PHOBOS_LOG_MAX_LEN)

enum phobos_rec_type {
	PHOBOS_REC_WRITE = 1,		/* payload = data written at dev_offset */
	PHOBOS_REC_ZERO = 2,		/* no payload; the range reads as zeros afterwards */
	PHOBOS_REC_SYNC_MARK = 3,	/* no payload, no device effect; closes a log cleanly */
};

enum phobos_codec {
	PHOBOS_CODEC_NONE = 0,
	PHOBOS_CODEC_LZ4 = 1,
	PHOBOS_CODEC_ZSTD = 2,
	PHOBOS_CODEC_COUNT = 3,
};

/* Byte offsets of the header fields (see the table above). */
enum phobos_log_field_offset {
	PL_OFF_MAGIC = 0,
	PL_OFF_VERSION = 4,
	PL_OFF_TYPE = 6,
	PL_OFF_CODEC = 7,
	PL_OFF_STORED_LEN = 8,
	PL_OFF_LENGTH = 12,
	PL_OFF_SEQ = 16,
	PL_OFF_STAMP = 24,
	PL_OFF_DEV_OFFSET = 32,
	PL_OFF_SYNCED_POS = 40,
	PL_OFF_PAYLOAD_CRC = 48,
	PL_OFF_FLAGS = 52,
	PL_OFF_RESERVED = 56,
	PL_OFF_HEADER_CRC = 60,
};

/*
 * The on-disk header as a struct, for documentation and size checking only: the code
 * never casts a buffer to it, it reads and writes fields at the offsets above.
 */
struct phobos_log_disk_header {
	u32 magic;
	u16 version;
	u8 type;
	u8 codec;
	u32 stored_len;
	u32 length;
	u64 seq;
	u64 stamp_ns;
	u64 dev_offset;
	u64 synced_pos;
	u32 payload_crc;
	u32 flags;
	u32 reserved;
	u32 header_crc;
};
PL_STATIC_ASSERT(sizeof(struct phobos_log_disk_header) == PHOBOS_LOG_HEADER_SIZE,
	       "log header must be exactly 64 bytes");
PL_STATIC_ASSERT((PHOBOS_LOG_MAX_LEN % PHOBOS_LOG_ALIGN) == 0, "max length must be aligned");

/* A decoded header in host byte order. */
struct phobos_rec {
	u8 type;		/* enum phobos_rec_type */
	u8 codec;		/* enum phobos_codec */
	u32 stored_len;		/* bytes */
	u32 length;		/* bytes */
	u64 seq;
	u64 stamp_ns;
	u64 dev_offset;		/* bytes */
	u64 synced_pos;		/* bytes into the log file */
	u32 payload_crc;
};

/* Size of a record on disk for a given stored payload length. */
static inline u64 phobos_log_record_size(u32 stored_len)
{
	return PHOBOS_LOG_HEADER_SIZE +
	       (((u64)stored_len + PHOBOS_LOG_ALIGN - 1) & ~(u64)(PHOBOS_LOG_ALIGN - 1));
}

#endif /* PHOBOS_LOG_FORMAT_H */
