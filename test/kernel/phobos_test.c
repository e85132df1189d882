// SPDX-License-Identifier: GPL-2.0-only
/*
 * phobos_test.c - drives phobos.ko from the kernel tier's guests (static, busybox
 * initramfs) and checks data on the host.
 *
 *   phobos_test version
 *   phobos_test create NAME BACKING LOG [-r REPLAY_FROM] [-s SIZE] [-q LOGSEQ] [-z] [-D]
 *		(-z: lz4, -D: durable completion; prints minor and recovery figures)
 *   phobos_test destroy NAME | query NAME | mode NAME logged|durable
 *   phobos_test switch NAME LOG SEQ
 *   phobos_test expect ERRNO_NAME SUBCOMMAND...   (passes only if it fails with that errno)
 *   phobos_test badargs                           (malformed ioctls must all be refused)
 *   phobos_test write DEV OFF LEN SEED [direct] [fsync]
 *   phobos_test verify DEV OFF LEN SEED [direct]
 *   phobos_test crash-work DEV NBLK               (endless: one fsynced 4 KiB block per gen)
 *   phobos_test crash-verify DEV NBLK DURABLE_GEN
 *   phobos_test bench DEV SEQ_MB RAND_N           (O_DIRECT: sequential 1 MiB, random 4 KiB)
 *
 * Exit status 0 on success; on failure a line starting with "FAIL" and status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../kernel/uapi/phobos_ioctl.h"

#define BLK 4096

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("FAIL: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	return 1;
}

/* ---- deterministic pattern: byte at device offset o depends on (seed, o) ---- */

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void pattern(uint8_t *buf, uint64_t off, size_t len, uint64_t seed)
{
	size_t i;

	for (i = 0; i < len; i++) {
		uint64_t o = off + i;

		buf[i] = (uint8_t)(mix64(seed * 0x100000001b3ull ^ (o >> 3)) >> (8 * (o & 7)));
	}
}

static void *xalloc(size_t len)
{
	void *p;

	if (posix_memalign(&p, BLK, len ? len : BLK))
		abort();
	return p;
}

/* ---- ioctls ---- */

static int ctl_fd(void)
{
	static int fd = -1;

	if (fd < 0)
		fd = open(PHOBOS_CTL_DEVICE, O_RDWR | O_CLOEXEC);
	return fd;
}

#define INIT_ARG(a) do { memset(&(a), 0, sizeof(a)); (a).version = PHOBOS_IOCTL_VERSION; \
			 (a).size = sizeof(a); } while (0)

static int do_ioctl(unsigned long cmd, void *arg, const char *what)
{
	int fd = ctl_fd();

	if (fd < 0 || ioctl(fd, cmd, arg) < 0) {
		int e = errno;

		printf("error: %s: %s (errno %d)\n", what, strerror(e), e);
		fflush(stdout);
		errno = e;
		return -1;
	}
	return 0;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src);
}

static int cmd_create(int argc, char **argv)
{
	struct phobos_ioc_create c;
	int i;

	if (argc < 4)
		return fail("usage: create NAME BACKING LOG [opts]");
	INIT_ARG(c);
	copy_str(c.name, sizeof(c.name), argv[1]);
	copy_str(c.backing_path, sizeof(c.backing_path), argv[2]);
	copy_str(c.log_path, sizeof(c.log_path), argv[3]);
	c.log_seq = 1;
	c.replay_from = PHOBOS_NO_REPLAY;
	for (i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "-r") && i + 1 < argc)
			c.replay_from = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-s") && i + 1 < argc)
			c.size_bytes = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-q") && i + 1 < argc)
			c.log_seq = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-z"))
			c.codec = PHOBOS_IOC_CODEC_LZ4;
		else if (!strcmp(argv[i], "-Z"))
			c.codec = PHOBOS_IOC_CODEC_ZSTD;
		else if (!strcmp(argv[i], "-D"))
			c.completion = PHOBOS_COMPLETION_DURABLE;
		else
			return fail("create: unknown option %s", argv[i]);
	}
	if (do_ioctl(PHOBOS_IOC_CREATE, &c, "create"))
		return 1;
	printf("created %s: /dev/phobos%u log_end=%" PRIu64 " replayed=%" PRIu64
	       " replayed_bytes=%" PRIu64 " truncated=%" PRIu64 "\n", c.name, c.minor,
	       (uint64_t)c.log_end, (uint64_t)c.replayed_records, (uint64_t)c.replayed_bytes,
	       (uint64_t)c.truncated_bytes);
	return 0;
}

static int cmd_destroy(int argc, char **argv)
{
	struct phobos_ioc_destroy d;

	if (argc < 2)
		return fail("usage: destroy NAME");
	INIT_ARG(d);
	copy_str(d.name, sizeof(d.name), argv[1]);
	if (do_ioctl(PHOBOS_IOC_DESTROY, &d, "destroy"))
		return 1;
	printf("destroyed %s: log_end=%" PRIu64 "\n", d.name, (uint64_t)d.log_end);
	return 0;
}

static int cmd_switch(int argc, char **argv)
{
	struct phobos_ioc_switch_log s;

	if (argc < 4)
		return fail("usage: switch NAME LOG SEQ");
	INIT_ARG(s);
	copy_str(s.name, sizeof(s.name), argv[1]);
	copy_str(s.log_path, sizeof(s.log_path), argv[2]);
	s.log_seq = strtoull(argv[3], NULL, 0);
	if (do_ioctl(PHOBOS_IOC_SWITCH_LOG, &s, "switch"))
		return 1;
	printf("switched %s to %s: old log ended at %" PRIu64 "\n", s.name, s.log_path,
	       (uint64_t)s.old_end);
	return 0;
}

static int cmd_mode(int argc, char **argv)
{
	struct phobos_ioc_set_completion s;

	if (argc < 3)
		return fail("usage: mode NAME logged|durable");
	INIT_ARG(s);
	copy_str(s.name, sizeof(s.name), argv[1]);
	s.completion = !strcmp(argv[2], "durable") ? PHOBOS_COMPLETION_DURABLE :
		       !strcmp(argv[2], "logged") ? PHOBOS_COMPLETION_LOGGED : 99;
	return do_ioctl(PHOBOS_IOC_SET_COMPLETION, &s, "mode") ? 1 : 0;
}

static int cmd_query(int argc, char **argv)
{
	struct phobos_ioc_query q;

	if (argc < 2)
		return fail("usage: query NAME");
	INIT_ARG(q);
	copy_str(q.name, sizeof(q.name), argv[1]);
	if (do_ioctl(PHOBOS_IOC_QUERY, &q, "query"))
		return 1;
	printf("query %s: minor=%u state=%#x completion=%u size=%" PRIu64 " log_seq=%" PRIu64
	       " log_pos=%" PRIu64 " synced_pos=%" PRIu64 " wb_pos=%" PRIu64
	       " wb_durable_pos=%" PRIu64 " pending=%" PRIu64 " writes=%" PRIu64
	       " zeroes=%" PRIu64 " flushes=%" PRIu64 " reads=%" PRIu64 " records=%" PRIu64
	       " log_fsyncs=%" PRIu64 " log_errors=%" PRIu64 " wb_errors=%" PRIu64 "\n",
	       q.name, q.minor, q.state, q.completion, (uint64_t)q.size_bytes,
	       (uint64_t)q.log_seq, (uint64_t)q.log_pos, (uint64_t)q.synced_pos,
	       (uint64_t)q.wb_pos, (uint64_t)q.wb_durable_pos, (uint64_t)q.pending_bytes,
	       (uint64_t)q.writes, (uint64_t)q.zeroes, (uint64_t)q.flushes, (uint64_t)q.reads,
	       (uint64_t)q.records, (uint64_t)q.log_fsyncs, (uint64_t)q.log_errors,
	       (uint64_t)q.wb_errors);
	return 0;
}

static int cmd_version(void)
{
	struct phobos_ioc_version v;

	INIT_ARG(v);
	if (do_ioctl(PHOBOS_IOC_VERSION, &v, "version"))
		return 1;
	printf("module ABI %u, log format %u\n", v.module_abi, v.log_format);
	return v.module_abi == PHOBOS_IOCTL_VERSION ? 0 : 1;
}

/* Each malformed call must fail with the errno given. */
static int cmd_badargs(void)
{
	struct phobos_ioc_create c;
	struct phobos_ioc_query q;
	struct phobos_ioc_set_completion s;
	int bad = 0, fd = ctl_fd();

#define EXPECT(call, want) do {							\
		int r_ = (call), e_ = errno;					\
		if (r_ != -1 || e_ != (want)) {					\
			printf("FAIL: %s: got %d errno %d, want errno %d\n", #call, r_, e_, want); \
			bad++;							\
		} else {							\
			printf("ok: %s -> %s\n", #call, strerror(want));	\
		}								\
	} while (0)

	if (fd < 0)
		return fail("open %s: %s", PHOBOS_CTL_DEVICE, strerror(errno));
	INIT_ARG(q);
	strcpy(q.name, "no-such-res");
	EXPECT(ioctl(fd, PHOBOS_IOC_QUERY, &q), ENOENT);
	q.version = 99;
	EXPECT(ioctl(fd, PHOBOS_IOC_QUERY, &q), EINVAL);
	INIT_ARG(q);
	q.size = 8;
	strcpy(q.name, "r0");
	EXPECT(ioctl(fd, PHOBOS_IOC_QUERY, &q), EINVAL);
	INIT_ARG(q);
	memset(q.name, 'a', sizeof(q.name));	/* no NUL */
	EXPECT(ioctl(fd, PHOBOS_IOC_QUERY, &q), EINVAL);
	INIT_ARG(q);
	strcpy(q.name, "bad/name");
	EXPECT(ioctl(fd, PHOBOS_IOC_QUERY, &q), EINVAL);
	INIT_ARG(q);
	strcpy(q.name, "r0");
	q.reserved[3] = 1;
	EXPECT(ioctl(fd, PHOBOS_IOC_QUERY, &q), EINVAL);
	EXPECT(ioctl(fd, _IOWR(PHOBOS_IOC_MAGIC, 42, struct phobos_ioc_query), &q), ENOTTY);
	EXPECT(ioctl(fd, PHOBOS_IOC_QUERY, (void *)16), EFAULT);

	INIT_ARG(c);
	strcpy(c.name, "bad0");
	strcpy(c.backing_path, "relative/path");
	strcpy(c.log_path, "/tmp/bad0.log");
	EXPECT(ioctl(fd, PHOBOS_IOC_CREATE, &c), EINVAL);
	strcpy(c.backing_path, "/nonexistent/disk");
	EXPECT(ioctl(fd, PHOBOS_IOC_CREATE, &c), ENOENT);
	strcpy(c.backing_path, "/dev/null");	/* a char device */
	EXPECT(ioctl(fd, PHOBOS_IOC_CREATE, &c), EINVAL);
	c.completion = 7;
	EXPECT(ioctl(fd, PHOBOS_IOC_CREATE, &c), EINVAL);
	c.completion = 0;
	c.size_bytes = 1000;	/* not a multiple of 4096 */
	EXPECT(ioctl(fd, PHOBOS_IOC_CREATE, &c), EINVAL);
	c.size_bytes = 0;
	c.flags = 1;
	EXPECT(ioctl(fd, PHOBOS_IOC_CREATE, &c), EINVAL);
	c.flags = 0;
	c.codec = PHOBOS_IOC_CODEC_ZSTD;
	EXPECT(ioctl(fd, PHOBOS_IOC_CREATE, &c), EOPNOTSUPP);

	INIT_ARG(s);
	strcpy(s.name, "no-such-res");
	EXPECT(ioctl(fd, PHOBOS_IOC_SET_COMPLETION, &s), ENOENT);
	return bad ? 1 : 0;
}

/* ---- data ---- */

static int open_dev(const char *path, int flags, int direct)
{
	int fd = open(path, flags | (direct ? O_DIRECT : 0));

	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
	return fd;
}

static int cmd_write(int argc, char **argv)
{
	uint64_t off, len, seed, done = 0;
	int direct = 0, sync = 0, fd, i;
	uint8_t *buf;

	if (argc < 5)
		return fail("usage: write DEV OFF LEN SEED [direct] [fsync]");
	off = strtoull(argv[2], NULL, 0);
	len = strtoull(argv[3], NULL, 0);
	seed = strtoull(argv[4], NULL, 0);
	for (i = 5; i < argc; i++) {
		direct |= !strcmp(argv[i], "direct");
		sync |= !strcmp(argv[i], "fsync");
	}
	fd = open_dev(argv[1], O_WRONLY, direct);
	if (fd < 0)
		return 1;
	buf = xalloc(1 << 20);
	while (done < len) {
		size_t n = len - done > (1 << 20) ? (1 << 20) : len - done;
		ssize_t w;

		pattern(buf, off + done, n, seed);
		w = pwrite(fd, buf, n, off + done);
		if (w != (ssize_t)n)
			return fail("write %s at %" PRIu64 ": %zd (%s)", argv[1], off + done, w,
				    strerror(errno));
		done += n;
	}
	if (sync && fsync(fd))
		return fail("fsync %s: %s", argv[1], strerror(errno));
	close(fd);
	free(buf);
	printf("wrote %" PRIu64 " bytes at %" PRIu64 " seed %" PRIu64 "%s%s\n", len, off, seed,
	       direct ? " O_DIRECT" : "", sync ? " +fsync" : "");
	return 0;
}

static int cmd_verify(int argc, char **argv)
{
	uint64_t off, len, seed, done = 0;
	int direct = argc > 5 && !strcmp(argv[5], "direct"), fd;
	uint8_t *buf, *want;

	if (argc < 5)
		return fail("usage: verify DEV OFF LEN SEED [direct]");
	off = strtoull(argv[2], NULL, 0);
	len = strtoull(argv[3], NULL, 0);
	seed = strtoull(argv[4], NULL, 0);
	fd = open_dev(argv[1], O_RDONLY, direct);
	if (fd < 0)
		return 1;
	buf = xalloc(1 << 20);
	want = xalloc(1 << 20);
	while (done < len) {
		size_t n = len - done > (1 << 20) ? (1 << 20) : len - done, i;
		ssize_t r = pread(fd, buf, n, off + done);

		if (r != (ssize_t)n)
			return fail("read %s at %" PRIu64 ": %zd (%s)", argv[1], off + done, r,
				    strerror(errno));
		pattern(want, off + done, n, seed);
		for (i = 0; i < n; i++)
			if (buf[i] != want[i])
				return fail("%s: byte at %" PRIu64 " is %#x, want %#x (seed %" PRIu64
					    ")", argv[1], off + done + i, buf[i], want[i], seed);
		done += n;
	}
	close(fd);
	printf("verified %" PRIu64 " bytes at %" PRIu64 " seed %" PRIu64 " on %s\n", len, off,
	       seed, argv[1]);
	return 0;
}

/*
 * Crash workload: generation g writes block g % nblk with a header word g and the
 * pattern of seed g; odd generations use O_DIRECT + fdatasync, even ones buffered
 * I/O + fsync. "KT: DURABLE g" is printed only after the sync returned.
 */
static int cmd_crash_work(int argc, char **argv)
{
	uint64_t nblk, g;
	int fdd, fdb;
	uint8_t *buf = xalloc(BLK);

	if (argc < 3)
		return fail("usage: crash-work DEV NBLK");
	nblk = strtoull(argv[2], NULL, 0);
	fdd = open_dev(argv[1], O_WRONLY, 1);
	fdb = open_dev(argv[1], O_WRONLY, 0);
	if (fdd < 0 || fdb < 0)
		return 1;
	for (g = 1;; g++) {
		uint64_t off = (g % nblk) * BLK;
		int fd = (g & 1) ? fdd : fdb;

		pattern(buf, off, BLK, g);
		memcpy(buf, &g, sizeof(g));
		if (pwrite(fd, buf, BLK, off) != BLK)
			return fail("crash-work: write gen %" PRIu64 ": %s", g, strerror(errno));
		if ((g & 1) ? fdatasync(fd) : fsync(fd))
			return fail("crash-work: sync gen %" PRIu64 ": %s", g, strerror(errno));
		printf("KT: DURABLE %" PRIu64 "\n", g);
		fflush(stdout);
	}
}

static int cmd_crash_verify(int argc, char **argv)
{
	uint64_t nblk, durable, b, newest = 0, checked = 0;
	uint8_t *buf = xalloc(BLK), *want = xalloc(BLK);
	int fd;

	if (argc < 4)
		return fail("usage: crash-verify DEV NBLK DURABLE_GEN");
	nblk = strtoull(argv[2], NULL, 0);
	durable = strtoull(argv[3], NULL, 0);
	/* O_DIRECT on devices in the guest; host image files may sit on tmpfs. */
	fd = open_dev(argv[1], O_RDONLY, !strncmp(argv[1], "/dev/", 5));
	if (fd < 0)
		return 1;
	for (b = 0; b < nblk; b++) {
		/* Last durable generation that wrote block b (gens are 1, 2, ...). */
		uint64_t last = 0, g;

		if (durable >= b)
			last = durable - (durable - b) % nblk;	/* 0: none (b == 0 only) */
		if (pread(fd, buf, BLK, b * BLK) != BLK)
			return fail("crash-verify: read block %" PRIu64 ": %s", b, strerror(errno));
		memcpy(&g, buf, sizeof(g));
		if (g == 0) {
			/* Never written (or only by a write that was not durable). */
			if (last)
				return fail("block %" PRIu64 ": empty, but gen %" PRIu64
					    " was durable", b, last);
			continue;
		}
		if (g % nblk != b)
			return fail("block %" PRIu64 ": holds gen %" PRIu64 " of another block",
				    b, g);
		if (g < last)
			return fail("block %" PRIu64 ": holds gen %" PRIu64 ", but gen %" PRIu64
				    " was durable", b, g, last);
		pattern(want, b * BLK, BLK, g);
		memcpy(want, &g, sizeof(g));
		if (memcmp(buf, want, BLK))
			return fail("block %" PRIu64 ": gen %" PRIu64 " content damaged", b, g);
		if (g > newest)
			newest = g;
		checked++;
	}
	close(fd);
	printf("crash-verify: %" PRIu64 " blocks hold intact data, every gen <= %" PRIu64
	       " present, newest gen found %" PRIu64 "\n", checked, durable, newest);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Sequential 1 MiB and random 4 KiB O_DIRECT writes, each phase ended by an fsync. */
static int cmd_bench(int argc, char **argv)
{
	uint64_t mb, n, i, x = 12345;
	uint8_t *buf = xalloc(1 << 20);
	double t, seq, rnd;
	int fd;

	if (argc < 4)
		return fail("usage: bench DEV SEQ_MB RAND_N");
	mb = strtoull(argv[2], NULL, 0);
	n = strtoull(argv[3], NULL, 0);
	fd = open_dev(argv[1], O_WRONLY, 1);
	if (fd < 0)
		return 1;
	pattern(buf, 0, 1 << 20, 99);
	t = now_s();
	for (i = 0; i < mb; i++)
		if (pwrite(fd, buf, 1 << 20, i << 20) != 1 << 20)
			return fail("bench: seq write: %s", strerror(errno));
	if (fsync(fd))
		return fail("bench: fsync: %s", strerror(errno));
	seq = mb / (now_s() - t);
	t = now_s();
	for (i = 0; i < n; i++) {
		x = mix64(x);
		if (pwrite(fd, buf, BLK, (x % (mb * 256)) * BLK) != BLK)
			return fail("bench: random write: %s", strerror(errno));
	}
	if (fsync(fd))
		return fail("bench: fsync: %s", strerror(errno));
	rnd = n / (now_s() - t);
	close(fd);
	printf("KT: BENCH %s seq_mib_s=%.1f rand4k_iops=%.0f\n", argv[1], seq, rnd);
	return 0;
}

static int run(int argc, char **argv);

static int cmd_expect(int argc, char **argv)
{
	static const struct { const char *name; int e; } names[] = {
		{ "EBUSY", EBUSY }, { "EINVAL", EINVAL }, { "ENOENT", ENOENT },
		{ "ENOSPC", ENOSPC }, { "EEXIST", EEXIST }, { "EUCLEAN", EUCLEAN },
		{ "EOPNOTSUPP", EOPNOTSUPP }, { "EPERM", EPERM },
	};
	int want = -1, r;
	size_t i;

	if (argc < 3)
		return fail("usage: expect ERRNO SUBCOMMAND...");
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(argv[1], names[i].name))
			want = names[i].e;
	if (want < 0)
		return fail("expect: unknown errno name %s", argv[1]);
	errno = 0;
	r = run(argc - 2, argv + 2);
	if (r == 0)
		return fail("expect %s: %s succeeded", argv[1], argv[2]);
	if (errno != want)
		return fail("expect %s: %s failed with errno %d (%s)", argv[1], argv[2], errno,
			    strerror(errno));
	printf("ok: %s refused with %s\n", argv[2], argv[1]);
	return 0;
}

static int run(int argc, char **argv)
{
	const char *c = argv[0];

	if (!strcmp(c, "version"))
		return cmd_version();
	if (!strcmp(c, "create"))
		return cmd_create(argc, argv);
	if (!strcmp(c, "destroy"))
		return cmd_destroy(argc, argv);
	if (!strcmp(c, "switch"))
		return cmd_switch(argc, argv);
	if (!strcmp(c, "mode"))
		return cmd_mode(argc, argv);
	if (!strcmp(c, "query"))
		return cmd_query(argc, argv);
	if (!strcmp(c, "badargs"))
		return cmd_badargs();
	if (!strcmp(c, "write"))
		return cmd_write(argc, argv);
	if (!strcmp(c, "verify"))
		return cmd_verify(argc, argv);
	if (!strcmp(c, "crash-work"))
		return cmd_crash_work(argc, argv);
	if (!strcmp(c, "crash-verify"))
		return cmd_crash_verify(argc, argv);
	if (!strcmp(c, "bench"))
		return cmd_bench(argc, argv);
	if (!strcmp(c, "expect"))
		return cmd_expect(argc, argv);
	return fail("unknown command %s", c);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		return fail("usage: phobos_test COMMAND ... (see the source header)");
	return run(argc - 1, argv + 1);
}
