/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note */
/*
 * phobos_ioctl.h - the control interface of phobos.ko, /dev/phobos-ctl.
 *
 * Plain C, usable from userspace (the addon's ioctl bridge, test/kernel/phobos_test.c)
 * and from the module. Every argument struct starts with the same two words:
 *
 *	version	PHOBOS_IOCTL_VERSION; the module refuses any other value (-EINVAL)
 *	size	sizeof(the struct); the module refuses any other value (-EINVAL)
 *
 * and ends with reserved words that must be zero on input (-EINVAL otherwise), so a
 * later version can give them meaning. Strings are NUL-terminated inside their array.
 * All fields are fixed-width and 8-byte aligned, so the layout is the same for 32-bit
 * and 64-bit callers (compat_ioctl passes them through unchanged).
 *
 * Example (create resource "r0" on /dev/vda, logging to /mars/resource-r0/log-...):
 *
 *	struct phobos_ioc_create c = { .version = PHOBOS_IOCTL_VERSION,
 *				       .size = sizeof(c), .log_seq = 1,
 *				       .replay_from = PHOBOS_NO_REPLAY };
 *	strcpy(c.name, "r0"); strcpy(c.backing_path, "/dev/vda");
 *	strcpy(c.log_path, "/mars/resource-r0/log-000000001-host");
 *	ioctl(open("/dev/phobos-ctl", O_RDWR), PHOBOS_IOC_CREATE, &c);
 *	// -> /dev/phobos<c.minor>
 *
 * docs/kernel.md has the table of ioctls and error codes.
 */
#ifndef PHOBOS_IOCTL_H
#define PHOBOS_IOCTL_H

#include <linux/types.h>	/* __u32, __u64: kernel and userspace (linux-libc-dev) */
#include <linux/ioctl.h>

#define PHOBOS_IOCTL_VERSION	1u
#define PHOBOS_CTL_DEVICE	"/dev/phobos-ctl"
#define PHOBOS_NAME_LEN		64	/* resource name incl. NUL: [A-Za-z0-9_.-]{1,63} */
#define PHOBOS_PATH_LEN		256	/* absolute path incl. NUL */
#define PHOBOS_NO_REPLAY	(~(__u64)0)	/* create: do not replay anything */

/* When a write bio is completed (acknowledged) to its submitter. */
enum phobos_completion {
	/*
	 * Plain writes: once the record is appended to the log file (page cache) and the
	 * data is visible to reads. REQ_FUA / REQ_PREFLUSH writes and empty flushes: once
	 * the log is durable (fdatasync) up to and including their record. The default.
	 */
	PHOBOS_COMPLETION_LOGGED = 0,
	/* Every write waits until its record is durable. */
	PHOBOS_COMPLETION_DURABLE = 1,
	PHOBOS_COMPLETION_COUNT
};

/* Codec for WRITE payloads; a record is stored compressed only when that pays. */
enum phobos_ioc_codec {
	PHOBOS_IOC_CODEC_NONE = 0,
	PHOBOS_IOC_CODEC_LZ4 = 1,
	PHOBOS_IOC_CODEC_ZSTD = 2,	/* not supported by this module version: -EOPNOTSUPP */
};

/* State bits in phobos_ioc_query.state. */
#define PHOBOS_STATE_LOG_ERROR	(1u << 0)	/* an append or fsync of the log failed */
#define PHOBOS_STATE_WB_ERROR	(1u << 1)	/* a writeback to the backing failed (retried) */
#define PHOBOS_STATE_OPEN	(1u << 2)	/* the block device is open */

struct phobos_ioc_version {
	__u32 version;
	__u32 size;
	__u32 module_abi;		/* out: PHOBOS_IOCTL_VERSION of the module */
	__u32 log_format;		/* out: log format version written (1) */
	__u64 reserved[4];
};

struct phobos_ioc_create {
	__u32 version;
	__u32 size;
	char name[PHOBOS_NAME_LEN];		/* resource name */
	char backing_path[PHOBOS_PATH_LEN];	/* block device or regular file */
	char log_path[PHOBOS_PATH_LEN];		/* log file, created if missing */
	__u64 log_seq;			/* the <seq> of log-<seq>-<host>; reported back by query */
	/*
	 * Log offset from which records are written to the backing before the device
	 * appears (crash recovery): the writeback position the daemon last saw durable
	 * (query.wb_durable_pos), or 0 to replay the whole file. Must be a record
	 * boundary. PHOBOS_NO_REPLAY: only verify the log (torn tail is still truncated).
	 */
	__u64 replay_from;
	__u64 size_bytes;		/* device size; 0 = the whole backing (multiple of 4096) */
	__u64 stamp_floor_ns;		/* record stamps are above this (daemon's Lamport clock) */
	__u32 completion;		/* enum phobos_completion */
	__u32 codec;			/* enum phobos_ioc_codec */
	__u32 flags;			/* reserved, 0 */
	__u32 minor;			/* out: /dev/phobos<minor> */
	__u64 log_end;			/* out: log offset where appending continues */
	__u64 replayed_records;		/* out: records written to the backing by replay */
	__u64 replayed_bytes;		/* out: device bytes they covered */
	__u64 truncated_bytes;		/* out: torn tail bytes cut off the log */
	__u64 reserved[8];
};

struct phobos_ioc_destroy {
	__u32 version;
	__u32 size;
	char name[PHOBOS_NAME_LEN];
	__u64 log_end;			/* out: log offset after the closing SYNC_MARK */
	__u64 reserved[4];
};

struct phobos_ioc_switch_log {
	__u32 version;
	__u32 size;
	char name[PHOBOS_NAME_LEN];
	char log_path[PHOBOS_PATH_LEN];	/* next log file: missing or empty */
	__u64 log_seq;			/* its <seq> */
	__u64 old_end;			/* out: end of the closed log, after its SYNC_MARK */
	__u64 reserved[4];
};

struct phobos_ioc_set_completion {
	__u32 version;
	__u32 size;
	char name[PHOBOS_NAME_LEN];
	__u32 completion;		/* enum phobos_completion, applies to the next batch */
	__u32 pad;			/* 0 */
	__u64 reserved[4];
};

struct phobos_ioc_query {
	__u32 version;
	__u32 size;
	char name[PHOBOS_NAME_LEN];
	/* everything below is out */
	__u32 minor;
	__u32 state;			/* PHOBOS_STATE_* */
	__u32 completion;
	__u32 codec;
	__u64 size_bytes;		/* device size */
	__u64 log_seq;			/* current log file */
	__u64 log_pos;			/* bytes appended to it */
	__u64 synced_pos;		/* bytes of it known durable */
	__u64 wb_log_seq;		/* log file of the writeback position */
	__u64 wb_pos;			/* records before this offset are on the backing */
	__u64 wb_durable_log_seq;	/* log file of the durable writeback position */
	__u64 wb_durable_pos;		/* ... and fsynced there: a safe replay_from */
	__u64 pending_bytes;		/* logged, not yet written back (held in RAM) */
	__u64 writes;			/* write bios */
	__u64 zeroes;			/* discard / write-zeroes bios */
	__u64 flushes;			/* bios with REQ_PREFLUSH or REQ_FUA */
	__u64 reads;			/* read bios */
	__u64 records;			/* records appended */
	__u64 log_fsyncs;		/* fdatasync calls on the log */
	__u64 log_errors;		/* failed appends or syncs */
	__u64 wb_errors;		/* failed writebacks */
	__u64 reserved[8];
};

#define PHOBOS_IOC_MAGIC	0xcf
#define PHOBOS_IOC_VERSION	_IOWR(PHOBOS_IOC_MAGIC, 0, struct phobos_ioc_version)
#define PHOBOS_IOC_CREATE	_IOWR(PHOBOS_IOC_MAGIC, 1, struct phobos_ioc_create)
#define PHOBOS_IOC_DESTROY	_IOWR(PHOBOS_IOC_MAGIC, 2, struct phobos_ioc_destroy)
#define PHOBOS_IOC_SWITCH_LOG	_IOWR(PHOBOS_IOC_MAGIC, 3, struct phobos_ioc_switch_log)
#define PHOBOS_IOC_QUERY	_IOWR(PHOBOS_IOC_MAGIC, 4, struct phobos_ioc_query)
#define PHOBOS_IOC_SET_COMPLETION _IOWR(PHOBOS_IOC_MAGIC, 5, struct phobos_ioc_set_completion)

#endif /* PHOBOS_IOCTL_H */
