// SPDX-License-Identifier: GPL-2.0-only
/*
 * phobos_main.c - phobos.ko: a block device that logs every write.
 *
 * Per resource the module exposes a bio-based block device /dev/phobos<N> over an
 * underlying block device or regular file (the "backing"). Every write and discard
 * becomes a record of the Phobos log format (kernel/common/, docs/log-format.md)
 * appended to the resource's current log file under /mars. The write is acknowledged
 * per the completion rule below, and written back to the backing later, in log order,
 * by a writeback worker. Secondaries pull the log files and replay them.
 *
 * Operator example (what marsadm and the daemon do through the ioctls):
 *
 *	phobos_test create r0 /dev/lv/r0 /mars/resource-r0/log-000000001-alpha
 *	  -> /dev/phobos0, counters in /sys/block/phobos0/phobos/
 *	phobos_test switch r0 /mars/resource-r0/log-000000002-alpha 2
 *	phobos_test destroy r0
 *
 * Completion rule (docs/kernel.md has a worked trace; identical to the userspace engine):
 *  - a plain write is acknowledged once its record is appended to the log file (page
 *    cache) and its data is visible to reads;
 *  - a write with REQ_FUA or REQ_PREFLUSH, and an empty flush, is acknowledged only
 *    after the log is durable (vfs_fsync_range, datasync) up to its record; the logger
 *    thread collects every bio that arrived meanwhile into one group: one fsync each;
 *  - in PHOBOS_COMPLETION_DURABLE mode every write waits as if it had REQ_FUA.
 *
 * Ordering: one logger work item appends bios in arrival order; writeback applies
 * records strictly in log order and only once their log bytes are durable, so the
 * backing always holds a prefix of the durable log and no write passes a FLUSH.
 * Reads see the newest data: they read the backing and then overlay every record not
 * yet written back (held in RAM), oldest first.
 *
 * Crash recovery: CREATE scans the whole log file, truncates a torn tail, refuses
 * corruption with -EUCLEAN, and writes the records from replay_from on to the backing
 * before the device appears.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/version.h>

/*
 * Written and tested against the Linux 6.1 block layer (Debian 12: 6.1.0-*-amd64).
 * Known changes after 6.1 that this file would need to follow, so newer kernels fail
 * here at build time instead of misbehaving at run time:
 *  6.5: block_device_operations.open takes a gendisk, .release loses fmode_t;
 *  6.5/6.7: file-based bdev opening (bdev_open_by_path, bdev_file_open_by_path);
 *  6.9: blk_alloc_disk() takes struct queue_limits;
 *  6.10/6.11: blk_queue_write_cache() and the blk_queue_max_*() setters removed
 *	in favour of queue_limits features; del_gendisk/freeze changes.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 1, 0)
#error "phobos: needs Linux 6.1 (bio_split_to_limits, blk_alloc_disk(node))"
#endif
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
#error "phobos: only checked against the Linux 6.1 block layer; port and re-test first"
#endif

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/blkdev.h>
#include <linux/bio.h>
#include <linux/fs.h>
#include <linux/file.h>
#include <linux/falloc.h>
#include <linux/uio.h>
#include <linux/miscdevice.h>
#include <linux/mutex.h>
#include <linux/rwsem.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/vmalloc.h>
#include <linux/sched/mm.h>
#include <linux/idr.h>
#include <linux/ktime.h>
#include <linux/crc32c.h>
#include <linux/lz4.h>
#include <linux/uaccess.h>
#include <linux/capability.h>
#include <linux/sysfs.h>
#include <linux/ctype.h>
#include <linux/delay.h>

#include "phobos_log.h"
#include "uapi/phobos_ioctl.h"

/* ---- constants ---- */

#define PHOBOS_MAX_BIO		(1u << 20)	/* largest read/write bio, bytes */
#define PHOBOS_MAX_PENDING	(64ull << 20)	/* RAM for records not yet written back */
#define PHOBOS_WB_BATCH		256		/* records per writeback round */
#define PHOBOS_WB_DELAY_MS	100		/* let writeback gather a batch (one log fsync) */
#define PHOBOS_WB_FSYNC_EVERY	(64ull << 20)	/* fsync the backing after this many bytes */
#define PHOBOS_SCAN_WIN		(PHOBOS_LOG_MAX_RECORD + (1u << 20))	/* recovery window */
#define PHOBOS_DRAIN_TRIES	10		/* writeback retries before destroy gives up */

/* Messages carry the resource name after the module prefix: "phobos: r0: ...". */
#define pd_err(pd, fmt, ...)	pr_err("%s: " fmt, (pd)->name, ##__VA_ARGS__)
#define pd_warn(pd, fmt, ...)	pr_warn("%s: " fmt, (pd)->name, ##__VA_ARGS__)
#define pd_info(pd, fmt, ...)	pr_info("%s: " fmt, (pd)->name, ##__VA_ARGS__)
#define pd_err_rl(pd, fmt, ...)	pr_err_ratelimited("%s: " fmt, (pd)->name, ##__VA_ARGS__)

/* ---- per-resource context ---- */

/* One logged write or zero range that is not yet on the backing. */
struct phobos_pend {
	struct list_head node;	/* in pd->pend, log order */
	u64 dev_off;		/* bytes */
	u32 len;		/* bytes */
	u64 log_gen;		/* generation of the log file it went to */
	u64 log_seq;		/* that file's <seq> */
	u64 log_end;		/* log offset just past its record */
	u8 *data;		/* len bytes; NULL for a zero range */
};

struct phobos_dev {
	struct list_head node;		/* in phobos_devs, under phobos_ctl_mutex */
	char name[PHOBOS_NAME_LEN];
	int minor;
	struct gendisk *disk;
	u64 size;			/* device size, bytes */

	/*
	 * open_count and dying, under open_mutex (a mutex: ->open may sleep). DESTROY
	 * refuses while open_count > 0 and sets dying so no open slips in after.
	 */
	struct mutex open_mutex;
	int open_count;
	bool dying;

	struct file *backing;
	char backing_path[PHOBOS_PATH_LEN];

	/*
	 * Bios waiting for the logger or the reader. q_lock is a spinlock taken with
	 * irqsave: submit_bio may be called with interrupts disabled by stacked drivers.
	 * It is a leaf lock.
	 */
	spinlock_t q_lock;
	struct bio_list write_q;
	struct bio_list read_q;
	struct workqueue_struct *log_wq;	/* ordered: one logger at a time */
	struct workqueue_struct *wb_wq;		/* ordered: one writeback at a time */
	struct workqueue_struct *read_wq;
	struct work_struct log_work;
	struct delayed_work wb_work;		/* delayed: retries after a backing error */
	struct work_struct read_work;

	/*
	 * The current log file. log_mutex is held by the logger for a whole batch
	 * (append + group fsync) and by SWITCH_LOG and destroy, so records never
	 * interleave with a log switch. Order: log_mutex before sync_mutex.
	 */
	struct mutex log_mutex;
	struct file *log;
	char log_path[PHOBOS_PATH_LEN];
	u64 log_seq;			/* <seq> of the current file */
	u64 log_gen;			/* bumped by each switch; written under both mutexes */
	u64 log_pos;			/* bytes appended; store_release by the appender */
	u64 next_rec_seq;		/* seq of the next record in this file */
	u64 last_stamp;			/* ns, last record's stamp_ns */
	u32 completion;			/* enum phobos_completion, READ_ONCE by the logger */
	u32 codec;			/* enum phobos_ioc_codec */

	/*
	 * sync_mutex serializes fsyncs of the log file and the updates of synced_pos:
	 * both the logger (FUA/FLUSH waiters) and writeback (before it may write a
	 * record to the backing) sync, and synced_pos must only grow.
	 */
	struct mutex sync_mutex;
	u64 synced_pos;			/* log bytes known durable */

	struct phobos_log_env env;
	void *lz4_wrk;			/* LZ4_MEM_COMPRESS bytes, logger only */
	u8 *enc_buf;			/* PHOBOS_LOG_MAX_RECORD bytes, logger only */

	/*
	 * Records logged but not yet on the backing, oldest first. pend_lock (spinlock,
	 * held only for list walks and memcpy) guards the list and pending_bytes; the
	 * logger appends at the tail, writeback removes from the head.
	 * wb_sem orders removal against reads: a read holds it shared from its backing
	 * read until it has overlaid the list, writeback holds it exclusive to remove
	 * entries it has written, so a read never misses an entry that left the list
	 * after its backing read. Order: wb_sem before pend_lock.
	 */
	spinlock_t pend_lock;
	struct list_head pend;
	u64 pending_bytes;
	wait_queue_head_t pend_wait;	/* the logger waits here when pending is full */
	struct rw_semaphore wb_sem;
	struct phobos_pend *wb_batch[PHOBOS_WB_BATCH];	/* writeback work only */

	/* Writeback positions, written by the writeback work only. */
	u64 wb_log_seq, wb_pos;
	u64 wb_durable_log_seq, wb_durable_pos;
	u64 wb_since_fsync;		/* bytes written back since the last backing fsync */

	unsigned long state;		/* PHOBOS_STATE_* bits */
	atomic64_t writes, zeroes, flushes, reads, records, log_fsyncs, log_errors, wb_errors;
};

static int phobos_major;
static DEFINE_IDA(phobos_minors);
/* Serializes every control operation and guards phobos_devs. Outermost lock. */
static DEFINE_MUTEX(phobos_ctl_mutex);
static LIST_HEAD(phobos_devs);
static const struct block_device_operations phobos_fops;

/* ---- environment of the format core ---- */

/* The core wants zlib-style crc32c (0 to start); the kernel's crc32c() is raw. */
static u32 phobos_env_crc32c(u32 crc, const void *data, size_t len)
{
	return ~crc32c(~crc, data, len);
}

static size_t phobos_env_compress(void *ctx, unsigned int codec, const void *src, size_t len,
				  void *dst, size_t cap)
{
	struct phobos_dev *pd = ctx;
	int n;

	if (codec != PHOBOS_CODEC_LZ4 || !pd->lz4_wrk)
		return 0;
	n = LZ4_compress_default(src, dst, len, cap, pd->lz4_wrk);
	return n > 0 ? n : 0;
}

static int phobos_env_decompress(void *ctx, unsigned int codec, const void *src, size_t len,
				 void *dst, size_t out_len)
{
	int n;

	if (codec != PHOBOS_CODEC_LZ4)
		return PL_E_CODEC_UNAVAILABLE;
	n = LZ4_decompress_safe(src, dst, len, out_len);
	return n == (int)out_len ? 0 : PL_E_DECOMPRESS;
}

/* ---- small utilities ---- */

/* Lamport-style stamp: wall clock, but always above the previous record's. */
static u64 phobos_stamp(struct phobos_dev *pd)
{
	u64 now = ktime_get_real_ns();

	if (now <= pd->last_stamp)
		now = pd->last_stamp + 1;
	pd->last_stamp = now;
	return now;
}

static u64 phobos_file_size(struct file *f)
{
	return i_size_read(f->f_mapping->host);
}

/* Write len bytes at off of the backing; a short write is an error. */
static int phobos_backing_write(struct phobos_dev *pd, u64 off, const void *data, u32 len)
{
	loff_t pos = off;
	ssize_t n = kernel_write(pd->backing, data, len, &pos);

	if (n == len)
		return 0;
	return n < 0 ? (int)n : -EIO;
}

/* Make [off, off+len) of the backing read as zeros. */
static int phobos_backing_zero(struct phobos_dev *pd, u64 off, u32 len)
{
	const void *zero = page_address(ZERO_PAGE(0));
	int err;

	err = vfs_fallocate(pd->backing, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len);
	if (err != -EOPNOTSUPP && err != -EINVAL)
		return err;
	/* No zero-range support (e.g. tmpfs): write zero pages. */
	while (len) {
		u32 n = min_t(u32, len, PAGE_SIZE);

		err = phobos_backing_write(pd, off, zero, n);
		if (err)
			return err;
		off += n;
		len -= n;
	}
	return 0;
}

/* ---- the log: sync and append ---- */

/*
 * Make log generation gen durable at least up to offset upto. A generation older than
 * the current one was synced by the switch that closed it.
 */
static int phobos_log_sync(struct phobos_dev *pd, u64 gen, u64 upto)
{
	u64 target;
	int err = 0;

	mutex_lock(&pd->sync_mutex);
	if (gen != pd->log_gen || pd->synced_pos >= upto)
		goto out_unlock;
	/* Pairs with smp_store_release() in phobos_append(): bytes below are written. */
	target = smp_load_acquire(&pd->log_pos);
	err = vfs_fsync_range(pd->log, pd->synced_pos, target - 1, 1);
	atomic64_inc(&pd->log_fsyncs);
	if (err) {
		set_bit(ilog2(PHOBOS_STATE_LOG_ERROR), &pd->state);
		atomic64_inc(&pd->log_errors);
		pd_err_rl(pd, "fsync of log %s failed: %d\n", pd->log_path, err);
		goto out_unlock;
	}
	WRITE_ONCE(pd->synced_pos, target);
out_unlock:
	mutex_unlock(&pd->sync_mutex);
	return err;
}

/*
 * Append one record (header + payload + pad) at log_pos. In: rec->type, length,
 * dev_offset; data for a WRITE. Caller holds log_mutex. On failure the file is cut
 * back so that no partial record stays behind, and log_pos does not move.
 */
static int phobos_append(struct phobos_dev *pd, struct phobos_rec *rec, const u8 *data)
{
	static const u8 zero_pad[PHOBOS_LOG_ALIGN];
	u8 hdr[PHOBOS_LOG_HEADER_SIZE];
	struct kvec vec[3];
	struct iov_iter it;
	unsigned int nvec = 0;
	size_t total = 0, n;
	loff_t pos = pd->log_pos;
	ssize_t ret;
	int err;

	lockdep_assert_held(&pd->log_mutex);
	rec->seq = pd->next_rec_seq;
	rec->stamp_ns = phobos_stamp(pd);
	rec->synced_pos = READ_ONCE(pd->synced_pos);

	if (rec->type == PHOBOS_REC_WRITE && pd->codec != PHOBOS_CODEC_NONE) {
		/* The core compresses only when it pays, else stores the data raw. */
		err = phobos_log_encode(&pd->env, rec, data, pd->codec, pd->enc_buf,
					PHOBOS_LOG_MAX_RECORD, &n);
		if (err)
			return -EINVAL;
		vec[nvec++] = (struct kvec){ pd->enc_buf, n };
		total = n;
	} else {
		/* Zero copy: header from the core, payload straight from the buffer. */
		rec->payload_crc = rec->type == PHOBOS_REC_WRITE ?
				   phobos_env_crc32c(0, data, rec->length) : 0;
		if (phobos_log_encode_header(&pd->env, rec, hdr))
			return -EINVAL;
		vec[nvec++] = (struct kvec){ hdr, sizeof(hdr) };
		total = sizeof(hdr);
		if (rec->type == PHOBOS_REC_WRITE) {
			u32 pad = (u32)(phobos_log_record_size(rec->length) - sizeof(hdr) -
					rec->length);

			vec[nvec++] = (struct kvec){ (void *)data, rec->length };
			total += rec->length;
			if (pad) {
				vec[nvec++] = (struct kvec){ (void *)zero_pad, pad };
				total += pad;
			}
		}
	}

	iov_iter_kvec(&it, ITER_SOURCE, vec, nvec, total);
	file_start_write(pd->log);
	ret = vfs_iter_write(pd->log, &it, &pos, 0);
	file_end_write(pd->log);
	if (ret != (ssize_t)total) {
		err = ret < 0 ? (int)ret : -ENOSPC;
		/* Cut off a partial record; the next append rewrites from log_pos. */
		if (ret > 0)
			vfs_truncate(&pd->log->f_path, pd->log_pos);
		set_bit(ilog2(PHOBOS_STATE_LOG_ERROR), &pd->state);
		atomic64_inc(&pd->log_errors);
		pd_err_rl(pd, "append to log %s at %llu failed: %d\n", pd->log_path,
			  pd->log_pos, err);
		return err;
	}
	pd->next_rec_seq++;
	atomic64_inc(&pd->records);
	/* Pairs with smp_load_acquire() in phobos_log_sync(). */
	smp_store_release(&pd->log_pos, (u64)pos);
	return 0;
}

/* Close the current log cleanly: sync, SYNC_MARK whose synced_pos is its own offset, sync. */
static int phobos_log_close(struct phobos_dev *pd)
{
	struct phobos_rec rec = { .type = PHOBOS_REC_SYNC_MARK };
	int err;

	lockdep_assert_held(&pd->log_mutex);
	err = phobos_log_sync(pd, pd->log_gen, pd->log_pos);
	if (err)
		return err;
	err = phobos_append(pd, &rec, NULL);
	if (err)
		return err;
	return phobos_log_sync(pd, pd->log_gen, pd->log_pos);
}

/* ---- the write path: logger ---- */

/* Copy a write bio's data into a new buffer. */
static u8 *phobos_copy_bio(struct bio *bio)
{
	struct bvec_iter iter;
	struct bio_vec bv;
	u8 *buf, *p;

	buf = kvmalloc(bio->bi_iter.bi_size, GFP_KERNEL);	/* NOIO via the work's scope */
	if (!buf)
		return NULL;
	p = buf;
	bio_for_each_segment(bv, bio, iter) {
		memcpy_from_bvec(p, &bv);
		p += bv.bv_len;
	}
	return buf;
}

/* Log one write/zero bio and make it visible to reads. Returns 0 or -errno. */
static int phobos_log_bio(struct phobos_dev *pd, struct bio *bio)
{
	struct phobos_rec rec = { 0 };
	struct phobos_pend *p;
	u32 len = bio->bi_iter.bi_size;
	bool zero = bio_op(bio) != REQ_OP_WRITE;
	int err;

	if (!len)
		return 0;	/* an empty flush: nothing to log */
	if (len > PHOBOS_LOG_MAX_LEN)	/* the queue limits make this impossible */
		return -EIO;

	/* Bound the RAM held for writeback; writeback never waits on the logger. */
	wait_event(pd->pend_wait, READ_ONCE(pd->pending_bytes) < PHOBOS_MAX_PENDING);

	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p)
		return -ENOMEM;
	if (!zero) {
		p->data = phobos_copy_bio(bio);
		if (!p->data) {
			kfree(p);
			return -ENOMEM;
		}
	}
	p->dev_off = (u64)bio->bi_iter.bi_sector << SECTOR_SHIFT;
	p->len = len;

	rec.type = zero ? PHOBOS_REC_ZERO : PHOBOS_REC_WRITE;
	rec.length = len;
	rec.dev_offset = p->dev_off;
	err = phobos_append(pd, &rec, p->data);
	if (err) {
		kvfree(p->data);
		kfree(p);
		return err;
	}
	p->log_gen = pd->log_gen;
	p->log_seq = pd->log_seq;
	p->log_end = pd->log_pos;

	spin_lock(&pd->pend_lock);
	list_add_tail(&p->node, &pd->pend);
	pd->pending_bytes += zero ? 0 : len;
	spin_unlock(&pd->pend_lock);
	atomic64_inc(zero ? &pd->zeroes : &pd->writes);
	/* Writeback waits a little to batch records (one log fsync), unless RAM runs short. */
	if (READ_ONCE(pd->pending_bytes) >= PHOBOS_MAX_PENDING / 4)
		mod_delayed_work(pd->wb_wq, &pd->wb_work, 0);
	else
		queue_delayed_work(pd->wb_wq, &pd->wb_work,
				   msecs_to_jiffies(PHOBOS_WB_DELAY_MS));
	return 0;
}

static bool phobos_bio_wants_sync(struct phobos_dev *pd, struct bio *bio)
{
	if (bio->bi_opf & (REQ_FUA | REQ_PREFLUSH))
		return true;
	return READ_ONCE(pd->completion) == PHOBOS_COMPLETION_DURABLE;
}

/*
 * The logger: takes every queued bio as one batch, appends their records in arrival
 * order, completes plain writes at once, then syncs the log once for all FUA/FLUSH
 * bios of the batch (group commit) and completes those.
 */
static void phobos_log_work(struct work_struct *work)
{
	struct phobos_dev *pd = container_of(work, struct phobos_dev, log_work);
	unsigned int noio = memalloc_noio_save();
	struct bio_list batch, waiters;
	struct bio *bio;

	for (;;) {
		bio_list_init(&batch);
		bio_list_init(&waiters);
		spin_lock_irq(&pd->q_lock);
		bio_list_merge(&batch, &pd->write_q);
		bio_list_init(&pd->write_q);
		spin_unlock_irq(&pd->q_lock);
		if (bio_list_empty(&batch))
			break;

		mutex_lock(&pd->log_mutex);
		while ((bio = bio_list_pop(&batch))) {
			int err = phobos_log_bio(pd, bio);

			if (bio->bi_opf & (REQ_FUA | REQ_PREFLUSH))
				atomic64_inc(&pd->flushes);
			if (err) {
				bio->bi_status = errno_to_blk_status(err);
				bio_endio(bio);
			} else if (phobos_bio_wants_sync(pd, bio)) {
				bio_list_add(&waiters, bio);
			} else {
				bio_endio(bio);
			}
		}
		if (!bio_list_empty(&waiters)) {
			int err = phobos_log_sync(pd, pd->log_gen, pd->log_pos);
			blk_status_t sts = errno_to_blk_status(err);

			while ((bio = bio_list_pop(&waiters))) {
				bio->bi_status = sts;
				bio_endio(bio);
			}
		}
		mutex_unlock(&pd->log_mutex);
	}
	memalloc_noio_restore(noio);
}

/* ---- writeback ---- */

static int phobos_wb_one(struct phobos_dev *pd, struct phobos_pend *p)
{
	if (p->data)
		return phobos_backing_write(pd, p->dev_off, p->data, p->len);
	return phobos_backing_zero(pd, p->dev_off, p->len);
}

/*
 * Writeback: apply pending records to the backing in log order, at most
 * PHOBOS_WB_BATCH per round, each round only after the log is durable past them.
 */
static void phobos_wb_work(struct work_struct *work)
{
	struct phobos_dev *pd = container_of(to_delayed_work(work), struct phobos_dev, wb_work);
	unsigned int noio = memalloc_noio_save();
	struct phobos_pend *p;
	unsigned int n, done, i;
	u64 bytes;
	int err;

	for (;;) {
		n = 0;
		spin_lock(&pd->pend_lock);
		list_for_each_entry(p, &pd->pend, node) {
			pd->wb_batch[n++] = p;
			if (n == PHOBOS_WB_BATCH)
				break;
		}
		spin_unlock(&pd->pend_lock);
		if (!n)
			break;

		/* The backing must never hold a write the durable log lacks. */
		p = pd->wb_batch[n - 1];
		err = phobos_log_sync(pd, p->log_gen, p->log_end);
		for (done = 0; !err && done < n; done++) {
			err = phobos_wb_one(pd, pd->wb_batch[done]);
			if (err) {
				set_bit(ilog2(PHOBOS_STATE_WB_ERROR), &pd->state);
				atomic64_inc(&pd->wb_errors);
				pd_err_rl(pd, "writeback to %s at %llu failed: %d, retrying\n",
					  pd->backing_path, pd->wb_batch[done]->dev_off, err);
			}
		}
		if (err && done)
			done--;		/* the failed one stays pending */
		if (!err)
			done = n;

		bytes = 0;
		down_write(&pd->wb_sem);
		spin_lock(&pd->pend_lock);
		for (i = 0; i < done; i++) {
			p = pd->wb_batch[i];
			list_del(&p->node);
			if (p->data)
				pd->pending_bytes -= p->len;
			bytes += p->len;
		}
		spin_unlock(&pd->pend_lock);
		up_write(&pd->wb_sem);

		if (done) {
			p = pd->wb_batch[done - 1];
			WRITE_ONCE(pd->wb_log_seq, p->log_seq);
			WRITE_ONCE(pd->wb_pos, p->log_end);
		}
		for (i = 0; i < done; i++) {
			kvfree(pd->wb_batch[i]->data);
			kfree(pd->wb_batch[i]);
		}
		if (done)
			wake_up(&pd->pend_wait);

		pd->wb_since_fsync += bytes;
		if (pd->wb_since_fsync &&
		    (list_empty(&pd->pend) || pd->wb_since_fsync >= PHOBOS_WB_FSYNC_EVERY)) {
			int ferr = vfs_fsync(pd->backing, 1);

			if (ferr) {
				err = err ?: ferr;
				atomic64_inc(&pd->wb_errors);
				pd_err_rl(pd, "fsync of %s failed: %d\n", pd->backing_path, ferr);
			} else {
				pd->wb_since_fsync = 0;
				WRITE_ONCE(pd->wb_durable_log_seq, pd->wb_log_seq);
				WRITE_ONCE(pd->wb_durable_pos, pd->wb_pos);
			}
		}
		if (err) {
			queue_delayed_work(pd->wb_wq, &pd->wb_work, HZ);
			break;
		}
		clear_bit(ilog2(PHOBOS_STATE_WB_ERROR), &pd->state);
	}
	memalloc_noio_restore(noio);
}

/* ---- reads ---- */

/* Overlay every pending record that overlaps [off, off+len) onto buf, oldest first. */
static void phobos_overlay(struct phobos_dev *pd, u8 *buf, u64 off, u32 len)
{
	struct phobos_pend *p;

	lockdep_assert_held(&pd->wb_sem);
	spin_lock(&pd->pend_lock);
	list_for_each_entry(p, &pd->pend, node) {
		u64 s = max(off, p->dev_off);
		u64 e = min(off + len, p->dev_off + p->len);

		if (s >= e)
			continue;
		if (p->data)
			memcpy(buf + (s - off), p->data + (s - p->dev_off), e - s);
		else
			memset(buf + (s - off), 0, e - s);
	}
	spin_unlock(&pd->pend_lock);
}

static blk_status_t phobos_read_bio(struct phobos_dev *pd, struct bio *bio)
{
	u64 off = (u64)bio->bi_iter.bi_sector << SECTOR_SHIFT;
	u32 len = bio->bi_iter.bi_size;
	struct bvec_iter iter;
	struct bio_vec bv;
	loff_t pos = off;
	ssize_t n;
	u8 *buf, *p;

	buf = kvmalloc(len, GFP_KERNEL);	/* NOIO via the work's scope */
	if (!buf)
		return BLK_STS_RESOURCE;
	down_read(&pd->wb_sem);
	n = kernel_read(pd->backing, buf, len, &pos);
	if (n >= 0 && n < len)
		memset(buf + n, 0, len - n);
	if (n >= 0)
		phobos_overlay(pd, buf, off, len);
	up_read(&pd->wb_sem);
	if (n < 0) {
		pd_err_rl(pd, "read of %s at %llu failed: %zd\n", pd->backing_path, off, n);
		kvfree(buf);
		return errno_to_blk_status(n);
	}
	p = buf;
	bio_for_each_segment(bv, bio, iter) {
		memcpy_to_bvec(&bv, p);
		p += bv.bv_len;
	}
	kvfree(buf);
	atomic64_inc(&pd->reads);
	return BLK_STS_OK;
}

static void phobos_read_work(struct work_struct *work)
{
	struct phobos_dev *pd = container_of(work, struct phobos_dev, read_work);
	unsigned int noio = memalloc_noio_save();
	struct bio *bio;

	for (;;) {
		spin_lock_irq(&pd->q_lock);
		bio = bio_list_pop(&pd->read_q);
		spin_unlock_irq(&pd->q_lock);
		if (!bio)
			break;
		bio->bi_status = phobos_read_bio(pd, bio);
		bio_endio(bio);
	}
	memalloc_noio_restore(noio);
}

/* ---- block device ops ---- */

static void phobos_submit_bio(struct bio *bio)
{
	struct phobos_dev *pd = bio->bi_bdev->bd_disk->private_data;
	unsigned long flags;

	bio = bio_split_to_limits(bio);
	if (!bio)
		return;
	switch (bio_op(bio)) {
	case REQ_OP_READ:
		spin_lock_irqsave(&pd->q_lock, flags);
		bio_list_add(&pd->read_q, bio);
		spin_unlock_irqrestore(&pd->q_lock, flags);
		queue_work(pd->read_wq, &pd->read_work);
		break;
	case REQ_OP_WRITE:
	case REQ_OP_DISCARD:
	case REQ_OP_WRITE_ZEROES:
		spin_lock_irqsave(&pd->q_lock, flags);
		bio_list_add(&pd->write_q, bio);
		spin_unlock_irqrestore(&pd->q_lock, flags);
		queue_work(pd->log_wq, &pd->log_work);
		break;
	default:
		bio->bi_status = BLK_STS_NOTSUPP;
		bio_endio(bio);
	}
}

static int phobos_open(struct block_device *bdev, fmode_t mode)
{
	struct phobos_dev *pd = bdev->bd_disk->private_data;
	int err = 0;

	mutex_lock(&pd->open_mutex);
	if (pd->dying)
		err = -ENXIO;
	else
		pd->open_count++;
	mutex_unlock(&pd->open_mutex);
	return err;
}

static void phobos_release(struct gendisk *disk, fmode_t mode)
{
	struct phobos_dev *pd = disk->private_data;

	mutex_lock(&pd->open_mutex);
	pd->open_count--;
	mutex_unlock(&pd->open_mutex);
}

static const struct block_device_operations phobos_fops = {
	.owner = THIS_MODULE,
	.submit_bio = phobos_submit_bio,
	.open = phobos_open,
	.release = phobos_release,
};

/* ---- sysfs: /sys/block/phobos<N>/phobos/, read-only ---- */

static struct phobos_dev *phobos_from_dev(struct device *dev)
{
	return dev_to_disk(dev)->private_data;
}

#define PHOBOS_ATTR(_name, _fmt, _expr)						\
static ssize_t _name##_show(struct device *dev, struct device_attribute *attr,	\
			    char *buf)						\
{										\
	struct phobos_dev *pd = phobos_from_dev(dev);				\
										\
	return sysfs_emit(buf, _fmt "\n", _expr);				\
}										\
static DEVICE_ATTR_RO(_name)

PHOBOS_ATTR(resource, "%s", pd->name);
PHOBOS_ATTR(completion, "%s",
	    READ_ONCE(pd->completion) == PHOBOS_COMPLETION_DURABLE ? "durable" : "logged");
PHOBOS_ATTR(log_seq, "%llu", READ_ONCE(pd->log_seq));
PHOBOS_ATTR(log_pos, "%llu", READ_ONCE(pd->log_pos));
PHOBOS_ATTR(synced_pos, "%llu", READ_ONCE(pd->synced_pos));
PHOBOS_ATTR(wb_pos, "%llu", READ_ONCE(pd->wb_pos));
PHOBOS_ATTR(wb_durable_pos, "%llu", READ_ONCE(pd->wb_durable_pos));
PHOBOS_ATTR(pending_bytes, "%llu", READ_ONCE(pd->pending_bytes));
PHOBOS_ATTR(writes, "%lld", atomic64_read(&pd->writes));
PHOBOS_ATTR(zeroes, "%lld", atomic64_read(&pd->zeroes));
PHOBOS_ATTR(flushes, "%lld", atomic64_read(&pd->flushes));
PHOBOS_ATTR(reads, "%lld", atomic64_read(&pd->reads));
PHOBOS_ATTR(records, "%lld", atomic64_read(&pd->records));
PHOBOS_ATTR(log_fsyncs, "%lld", atomic64_read(&pd->log_fsyncs));
PHOBOS_ATTR(log_errors, "%lld", atomic64_read(&pd->log_errors));
PHOBOS_ATTR(wb_errors, "%lld", atomic64_read(&pd->wb_errors));

static struct attribute *phobos_attrs[] = {
	&dev_attr_resource.attr, &dev_attr_completion.attr, &dev_attr_log_seq.attr,
	&dev_attr_log_pos.attr, &dev_attr_synced_pos.attr, &dev_attr_wb_pos.attr,
	&dev_attr_wb_durable_pos.attr, &dev_attr_pending_bytes.attr, &dev_attr_writes.attr,
	&dev_attr_zeroes.attr, &dev_attr_flushes.attr, &dev_attr_reads.attr,
	&dev_attr_records.attr, &dev_attr_log_fsyncs.attr, &dev_attr_log_errors.attr,
	&dev_attr_wb_errors.attr, NULL,
};

static const struct attribute_group phobos_attr_group = {
	.name = "phobos",
	.attrs = phobos_attrs,
};

static const struct attribute_group *phobos_attr_groups[] = { &phobos_attr_group, NULL };

/* ---- recovery: scan the log, cut a torn tail, replay onto the backing ---- */

struct phobos_scanner {
	u8 *win;		/* PHOBOS_SCAN_WIN bytes of the log from wbase */
	u64 wbase, wlen;
	u8 *scratch;		/* PHOBOS_LOG_MAX_LEN bytes for decompressed payloads */
};

static int phobos_scan_fill(struct phobos_dev *pd, struct phobos_scanner *sc, u64 from,
			    u64 fsize)
{
	u64 want = min_t(u64, PHOBOS_SCAN_WIN, fsize - from);
	loff_t pos = from;
	ssize_t n = kernel_read(pd->log, sc->win, want, &pos);

	if (n != (ssize_t)want) {
		pd_err(pd, "reading log %s at %llu failed: %zd\n", pd->log_path, from, n);
		return n < 0 ? (int)n : -EIO;
	}
	sc->wbase = from;
	sc->wlen = want;
	return 0;
}

/* Is there a header past bad whose synced_pos vouches for the bytes at bad? */
static int phobos_scan_evidence(struct phobos_dev *pd, struct phobos_scanner *sc, u64 bad,
				u64 fsize, u64 *at)
{
	u64 base = bad & ~(u64)(PHOBOS_LOG_ALIGN - 1);
	int err;

	while (base + PHOBOS_LOG_HEADER_SIZE <= fsize) {
		err = phobos_scan_fill(pd, sc, base, fsize);
		if (err)
			return err;
		if (phobos_log_find_evidence(&pd->env, sc->win, sc->wlen, base, bad, at))
			return 1;
		if (base + sc->wlen >= fsize)
			break;
		/* Overlap one header so none straddling the window edge is missed. */
		base += sc->wlen - PHOBOS_LOG_HEADER_SIZE;
	}
	return 0;
}

static int phobos_replay_one(struct phobos_dev *pd, const struct phobos_scan *s)
{
	const struct phobos_rec *r = &s->rec;

	if (r->type == PHOBOS_REC_SYNC_MARK)
		return 0;
	if (r->dev_offset + r->length > pd->size) {
		pd_err(pd, "log %s record at %llu covers [%llu, +%u), beyond the %llu-byte device\n",
		       pd->log_path, s->offset, r->dev_offset, r->length, pd->size);
		return -EINVAL;
	}
	if (r->type == PHOBOS_REC_WRITE)
		return phobos_backing_write(pd, r->dev_offset, s->data, r->length);
	return phobos_backing_zero(pd, r->dev_offset, r->length);
}

/*
 * Walk the whole log file from offset 0. Records at or after replay_from are written
 * to the backing. Sets the append position, next record seq and last stamp.
 */
static int phobos_recover(struct phobos_dev *pd, struct phobos_ioc_create *c)
{
	struct phobos_scanner sc = { 0 };
	struct phobos_scan s;
	u64 fsize = phobos_file_size(pd->log);
	u64 pos = 0, expect = 1, at;
	bool replay = c->replay_from != PHOBOS_NO_REPLAY;
	bool boundary = !replay || c->replay_from == 0;
	int err = 0;

	sc.win = vmalloc(PHOBOS_SCAN_WIN);
	sc.scratch = vmalloc(PHOBOS_LOG_MAX_LEN);
	if (!sc.win || !sc.scratch) {
		err = -ENOMEM;
		goto out_free;
	}
	for (;;) {
		/* Keep a whole maximal record in the window unless the file ends first. */
		if (sc.wbase + sc.wlen < fsize && pos + PHOBOS_LOG_MAX_RECORD > sc.wbase + sc.wlen) {
			err = phobos_scan_fill(pd, &sc, pos, fsize);
			if (err)
				goto out_free;
		}
		phobos_log_scan_one(&pd->env, sc.win + (pos - sc.wbase), sc.wbase + sc.wlen - pos,
				    pos, expect, sc.wbase + sc.wlen == fsize, sc.scratch,
				    PHOBOS_LOG_MAX_LEN, &s);
		if (s.kind == PHOBOS_SCAN_END)
			break;
		if (s.kind == PHOBOS_SCAN_RECORD) {
			if (replay && pos >= c->replay_from) {
				err = phobos_replay_one(pd, &s);
				if (err)
					goto out_free;
				if (s.rec.type != PHOBOS_REC_SYNC_MARK) {
					c->replayed_records++;
					c->replayed_bytes += s.rec.length;
				}
			}
			if (pos == c->replay_from)
				boundary = true;
			pd->last_stamp = max(pd->last_stamp, s.rec.stamp_ns);
			expect = s.rec.seq + 1;
			pos += s.size;
			continue;
		}
		if (s.fault.err == PL_E_CODEC_UNAVAILABLE) {
			pd_err(pd, "log %s record at %llu uses codec %llu, which this module cannot decompress\n",
			       pd->log_path, pos, s.fault.got);
			err = -EOPNOTSUPP;
			goto out_free;
		}
		if (s.kind == PHOBOS_SCAN_NEED_MORE) {	/* the window logic rules this out */
			pd_err(pd, "log %s: scan window too small at %llu\n", pd->log_path, pos);
			err = -EIO;
			goto out_free;
		}
		/*
		 * A damaged record: torn tail or corruption? A torn append leaves the first
		 * 8 bytes (magic, version) right or zero, so any other magic or an unknown
		 * version is proof by itself (docs/log-format.md, the torn-tail rule);
		 * otherwise a later header whose synced_pos passes this offset is.
		 */
		if (phobos_log_fault_is_proof(&s.fault)) {
			at = pos;
			err = 1;
		} else {
			err = phobos_scan_evidence(pd, &sc, pos, fsize, &at);
			if (err < 0)
				goto out_free;
		}
		if (err) {
			pd_err(pd, "log %s corrupt at offset %llu: %s (got %#llx, want %#llx); proof at %llu\n",
			       pd->log_path, pos, phobos_log_strerror(s.fault.err), s.fault.got,
			       s.fault.want, at);
			err = -EUCLEAN;
			goto out_free;
		}
		pd_warn(pd, "log %s torn tail at offset %llu (%s): cutting %llu bytes\n",
			pd->log_path, pos, phobos_log_strerror(s.fault.err), fsize - pos);
		err = vfs_truncate(&pd->log->f_path, pos);
		if (err) {
			pd_err(pd, "truncating log %s to %llu failed: %d\n", pd->log_path, pos, err);
			goto out_free;
		}
		c->truncated_bytes = fsize - pos;
		break;
	}
	if (replay && !boundary && c->replay_from != pos) {
		pd_err(pd, "replay_from %llu is not a record boundary of log %s (end %llu)\n",
		       c->replay_from, pd->log_path, pos);
		err = -EINVAL;
		goto out_free;
	}
	if (replay) {
		err = vfs_fsync(pd->backing, 0);
		if (err) {
			pd_err(pd, "fsync of %s after replay failed: %d\n", pd->backing_path, err);
			goto out_free;
		}
	}
	err = vfs_fsync(pd->log, 1);
	if (err) {
		pd_err(pd, "fsync of log %s failed: %d\n", pd->log_path, err);
		goto out_free;
	}
	pd->log_pos = pos;
	pd->synced_pos = pos;
	pd->next_rec_seq = expect;
	pd->wb_pos = pos;
	pd->wb_durable_pos = pos;
	c->log_end = pos;
	if (c->replayed_records || c->truncated_bytes)
		pd_info(pd, "log %s: replayed %llu records (%llu bytes) from %llu, appending at %llu\n",
			pd->log_path, c->replayed_records, c->replayed_bytes, c->replay_from, pos);
out_free:
	vfree(sc.scratch);
	vfree(sc.win);
	return err;
}

/* ---- create / destroy / switch ---- */

static struct phobos_dev *phobos_find(const char *name)
{
	struct phobos_dev *pd;

	lockdep_assert_held(&phobos_ctl_mutex);
	list_for_each_entry(pd, &phobos_devs, node)
		if (!strcmp(pd->name, name))
			return pd;
	return NULL;
}

/* Is inode already a backing or log of some resource? */
static bool phobos_inode_in_use(struct inode *inode)
{
	struct phobos_dev *pd;

	lockdep_assert_held(&phobos_ctl_mutex);
	list_for_each_entry(pd, &phobos_devs, node)
		if (pd->backing->f_mapping->host == inode || file_inode(pd->log) == inode)
			return true;
	return false;
}

static int phobos_open_backing(struct phobos_dev *pd, const char *path)
{
	struct file *f;
	struct inode *inode;

	/* O_EXCL on a block device claims it: a mounted or claimed device is -EBUSY. */
	/* (Without O_CREAT, O_EXCL means nothing for a regular file.) */
	f = filp_open(path, O_RDWR | O_LARGEFILE | O_EXCL, 0);
	if (IS_ERR(f)) {
		pd_err(pd, "cannot open backing %s: %ld\n", path, PTR_ERR(f));
		return PTR_ERR(f);
	}
	inode = f->f_mapping->host;
	if (!S_ISBLK(file_inode(f)->i_mode) && !S_ISREG(file_inode(f)->i_mode)) {
		pd_err(pd, "backing %s is neither a block device nor a regular file\n", path);
		goto out_put;
	}
	if (S_ISBLK(file_inode(f)->i_mode) && I_BDEV(inode)->bd_disk->fops == &phobos_fops) {
		pd_err(pd, "backing %s is itself a phobos device\n", path);
		goto out_put;
	}
	if (phobos_inode_in_use(inode)) {
		pd_err(pd, "backing %s is busy: used by another resource\n", path);
		fput(f);
		return -EBUSY;
	}
	pd->backing = f;
	return 0;
out_put:
	fput(f);
	return -EINVAL;
}

static struct file *phobos_open_log(struct phobos_dev *pd, const char *path)
{
	struct file *f;

	f = filp_open(path, O_RDWR | O_CREAT | O_LARGEFILE | O_NOATIME, 0600);
	if (IS_ERR(f)) {
		pd_err(pd, "cannot open log %s: %ld\n", path, PTR_ERR(f));
		return f;
	}
	if (!S_ISREG(file_inode(f)->i_mode)) {
		pd_err(pd, "log %s is not a regular file\n", path);
		fput(f);
		return ERR_PTR(-EINVAL);
	}
	if (file_inode(f) == pd->backing->f_mapping->host || phobos_inode_in_use(file_inode(f))) {
		pd_err(pd, "log %s is busy: used by a resource\n", path);
		fput(f);
		return ERR_PTR(-EBUSY);
	}
	return f;
}

static int phobos_setup_disk(struct phobos_dev *pd)
{
	struct gendisk *disk;
	struct request_queue *q;
	int err;

	disk = blk_alloc_disk(NUMA_NO_NODE);
	if (!disk)
		return -ENOMEM;
	disk->major = phobos_major;
	disk->first_minor = pd->minor;
	disk->minors = 1;
	disk->fops = &phobos_fops;
	disk->private_data = pd;
	disk->flags |= GENHD_FL_NO_PART;
	snprintf(disk->disk_name, DISK_NAME_LEN, "phobos%d", pd->minor);
	set_capacity(disk, pd->size >> SECTOR_SHIFT);

	q = disk->queue;
	blk_queue_logical_block_size(q, SECTOR_SIZE);
	blk_queue_physical_block_size(q, PAGE_SIZE);
	blk_queue_max_hw_sectors(q, PHOBOS_MAX_BIO >> SECTOR_SHIFT);
	/* One discard or write-zeroes bio becomes one ZERO record. */
	blk_queue_max_discard_sectors(q, PHOBOS_LOG_MAX_LEN >> SECTOR_SHIFT);
	blk_queue_max_write_zeroes_sectors(q, PHOBOS_LOG_MAX_LEN >> SECTOR_SHIFT);
	q->limits.discard_granularity = PAGE_SIZE;
	/* A volatile cache: upper layers send PREFLUSH and FUA, which we honour. */
	blk_queue_write_cache(q, true, true);
	blk_queue_flag_set(QUEUE_FLAG_NONROT, q);

	err = device_add_disk(NULL, disk, phobos_attr_groups);
	if (err) {
		put_disk(disk);
		return err;
	}
	pd->disk = disk;
	return 0;
}

static bool phobos_valid_name(const char *name)
{
	size_t i, n = strnlen(name, PHOBOS_NAME_LEN);

	if (n == 0 || n == PHOBOS_NAME_LEN)
		return false;
	for (i = 0; i < n; i++)
		if (!isalnum(name[i]) && !strchr("_.-", name[i]))
			return false;
	return true;
}

static bool phobos_valid_path(const char *path)
{
	size_t n = strnlen(path, PHOBOS_PATH_LEN);

	return n > 1 && n < PHOBOS_PATH_LEN && path[0] == '/';
}

static int phobos_create(struct phobos_ioc_create *c)
{
	struct phobos_dev *pd;
	u64 bsize;
	int err;

	lockdep_assert_held(&phobos_ctl_mutex);
	if (!phobos_valid_name(c->name) || !phobos_valid_path(c->backing_path) ||
	    !phobos_valid_path(c->log_path) || c->completion >= PHOBOS_COMPLETION_COUNT ||
	    c->codec > PHOBOS_IOC_CODEC_ZSTD || c->flags || c->size_bytes % PAGE_SIZE) {
		pr_warn("create: bad arguments (name, paths, completion %u, codec %u, flags %#x, size %llu)\n",
			c->completion, c->codec, c->flags, c->size_bytes);
		return -EINVAL;
	}
	if (c->codec == PHOBOS_IOC_CODEC_ZSTD) {
		pr_warn("%.63s: create: codec zstd is not supported by this module\n", c->name);
		return -EOPNOTSUPP;
	}
	if (phobos_find(c->name)) {
		pr_warn("%s: create: resource exists\n", c->name);
		return -EEXIST;
	}

	pd = kzalloc(sizeof(*pd), GFP_KERNEL);
	if (!pd)
		return -ENOMEM;
	strscpy(pd->name, c->name, sizeof(pd->name));
	strscpy(pd->backing_path, c->backing_path, sizeof(pd->backing_path));
	strscpy(pd->log_path, c->log_path, sizeof(pd->log_path));
	mutex_init(&pd->open_mutex);
	mutex_init(&pd->log_mutex);
	mutex_init(&pd->sync_mutex);
	spin_lock_init(&pd->q_lock);
	spin_lock_init(&pd->pend_lock);
	bio_list_init(&pd->write_q);
	bio_list_init(&pd->read_q);
	INIT_LIST_HEAD(&pd->pend);
	init_waitqueue_head(&pd->pend_wait);
	init_rwsem(&pd->wb_sem);
	INIT_WORK(&pd->log_work, phobos_log_work);
	INIT_DELAYED_WORK(&pd->wb_work, phobos_wb_work);
	INIT_WORK(&pd->read_work, phobos_read_work);
	pd->completion = c->completion;
	pd->codec = c->codec;
	pd->log_seq = c->log_seq;
	pd->wb_log_seq = c->log_seq;
	pd->wb_durable_log_seq = c->log_seq;
	pd->next_rec_seq = 1;
	pd->last_stamp = c->stamp_floor_ns;
	pd->env.crc32c = phobos_env_crc32c;
	pd->env.compress = phobos_env_compress;
	pd->env.decompress = phobos_env_decompress;
	pd->env.ctx = pd;

	err = ida_alloc_max(&phobos_minors, MINORMASK, GFP_KERNEL);
	if (err < 0)
		goto out_free_pd;
	pd->minor = err;

	err = phobos_open_backing(pd, c->backing_path);
	if (err)
		goto out_free_minor;
	bsize = phobos_file_size(pd->backing) & ~(u64)(PAGE_SIZE - 1);
	pd->size = c->size_bytes ?: bsize;
	if (pd->size == 0 || bsize < pd->size) {
		pd_err(pd, "backing %s too small: %llu bytes, need %llu\n", pd->backing_path,
		       phobos_file_size(pd->backing), pd->size ?: (u64)PAGE_SIZE);
		err = -ENOSPC;
		goto out_put_backing;
	}

	pd->log = phobos_open_log(pd, c->log_path);
	if (IS_ERR(pd->log)) {
		err = PTR_ERR(pd->log);
		goto out_put_backing;
	}

	err = -ENOMEM;
	pd->enc_buf = vmalloc(PHOBOS_LOG_MAX_RECORD);
	if (!pd->enc_buf)
		goto out_put_log;
	if (pd->codec == PHOBOS_IOC_CODEC_LZ4) {
		pd->lz4_wrk = vmalloc(LZ4_MEM_COMPRESS);
		if (!pd->lz4_wrk)
			goto out_free_bufs;
	}

	err = phobos_recover(pd, c);
	if (err)
		goto out_free_bufs;

	err = -ENOMEM;
	pd->log_wq = alloc_ordered_workqueue("phobos%d_log", WQ_MEM_RECLAIM, pd->minor);
	if (!pd->log_wq)
		goto out_free_bufs;
	pd->wb_wq = alloc_ordered_workqueue("phobos%d_wb", WQ_MEM_RECLAIM, pd->minor);
	if (!pd->wb_wq)
		goto out_destroy_log_wq;
	pd->read_wq = alloc_workqueue("phobos%d_rd", WQ_MEM_RECLAIM | WQ_UNBOUND, 1, pd->minor);
	if (!pd->read_wq)
		goto out_destroy_wb_wq;

	err = phobos_setup_disk(pd);
	if (err) {
		pd_err(pd, "adding disk phobos%d failed: %d\n", pd->minor, err);
		goto out_destroy_read_wq;
	}
	list_add_tail(&pd->node, &phobos_devs);
	c->minor = pd->minor;
	pd_info(pd, "phobos%d: %llu bytes on %s, log %s at %llu, completion %s%s\n", pd->minor,
		pd->size, pd->backing_path, pd->log_path, pd->log_pos,
		pd->completion == PHOBOS_COMPLETION_DURABLE ? "durable" : "logged",
		pd->codec == PHOBOS_IOC_CODEC_LZ4 ? ", lz4" : "");
	return 0;

out_destroy_read_wq:
	destroy_workqueue(pd->read_wq);
out_destroy_wb_wq:
	destroy_workqueue(pd->wb_wq);
out_destroy_log_wq:
	destroy_workqueue(pd->log_wq);
out_free_bufs:
	vfree(pd->lz4_wrk);
	vfree(pd->enc_buf);
out_put_log:
	fput(pd->log);
out_put_backing:
	fput(pd->backing);
out_free_minor:
	ida_free(&phobos_minors, pd->minor);
out_free_pd:
	kfree(pd);
	return err;
}

/*
 * Let writeback empty the pending list. Gives up after PHOBOS_DRAIN_TRIES failed
 * rounds (a dead backing): the records stay in the log for replay.
 */
static bool phobos_drain(struct phobos_dev *pd)
{
	int tries = 0;
	u64 last = READ_ONCE(pd->wb_pos);

	for (;;) {
		flush_delayed_work(&pd->wb_work);
		if (list_empty(&pd->pend))
			return true;
		if (READ_ONCE(pd->wb_pos) != last) {
			last = READ_ONCE(pd->wb_pos);
			tries = 0;
		} else if (++tries >= PHOBOS_DRAIN_TRIES) {
			return false;
		}
		msleep(100);
	}
}

/* Tear down a resource whose disk has no openers; the disk is removed first. */
static u64 phobos_teardown(struct phobos_dev *pd)
{
	struct phobos_pend *p, *tmp;
	u64 end;
	int err;

	del_gendisk(pd->disk);
	/* No new bios now; finish the queued ones. */
	flush_workqueue(pd->log_wq);
	flush_workqueue(pd->read_wq);
	if (!phobos_drain(pd)) {
		pd_err(pd, "writeback to %s keeps failing: log %s left without SYNC_MARK, replay it on the next create\n",
		       pd->backing_path, pd->log_path);
	} else {
		err = vfs_fsync(pd->backing, 0);
		mutex_lock(&pd->log_mutex);
		if (!err)
			err = phobos_log_close(pd);
		mutex_unlock(&pd->log_mutex);
		if (err)
			pd_err(pd, "closing log %s cleanly failed: %d\n", pd->log_path, err);
	}
	cancel_delayed_work_sync(&pd->wb_work);
	destroy_workqueue(pd->read_wq);
	destroy_workqueue(pd->wb_wq);
	destroy_workqueue(pd->log_wq);
	list_for_each_entry_safe(p, tmp, &pd->pend, node) {
		list_del(&p->node);
		kvfree(p->data);
		kfree(p);
	}
	end = pd->log_pos;
	pd_info(pd, "phobos%d removed, log %s ends at %llu\n", pd->minor, pd->log_path, end);
	put_disk(pd->disk);
	vfree(pd->lz4_wrk);
	vfree(pd->enc_buf);
	fput(pd->log);
	fput(pd->backing);
	ida_free(&phobos_minors, pd->minor);
	kfree(pd);
	return end;
}

static int phobos_destroy(struct phobos_ioc_destroy *d)
{
	struct phobos_dev *pd;
	int openers;

	lockdep_assert_held(&phobos_ctl_mutex);
	pd = phobos_find(d->name);
	if (!pd)
		return -ENOENT;
	mutex_lock(&pd->open_mutex);
	openers = pd->open_count;
	if (!openers)
		pd->dying = true;
	mutex_unlock(&pd->open_mutex);
	if (openers) {
		pd_warn(pd, "destroy refused: /dev/phobos%d is open (%d openers)\n", pd->minor,
			openers);
		return -EBUSY;
	}
	list_del(&pd->node);
	d->log_end = phobos_teardown(pd);
	return 0;
}

static int phobos_switch_log(struct phobos_ioc_switch_log *s)
{
	struct phobos_dev *pd;
	struct file *f, *old;
	int err;

	lockdep_assert_held(&phobos_ctl_mutex);
	pd = phobos_find(s->name);
	if (!pd)
		return -ENOENT;
	if (!phobos_valid_path(s->log_path)) {
		pd_warn(pd, "switch: bad log path\n");
		return -EINVAL;
	}
	f = phobos_open_log(pd, s->log_path);
	if (IS_ERR(f))
		return PTR_ERR(f);
	if (phobos_file_size(f) != 0) {
		pd_err(pd, "switch: next log %s is not empty\n", s->log_path);
		fput(f);
		return -EEXIST;
	}

	mutex_lock(&pd->log_mutex);
	err = phobos_log_close(pd);
	if (err) {
		mutex_unlock(&pd->log_mutex);
		pd_err(pd, "switch: closing log %s failed: %d\n", pd->log_path, err);
		fput(f);
		return err;
	}
	s->old_end = pd->log_pos;
	mutex_lock(&pd->sync_mutex);
	old = pd->log;
	pd->log = f;
	strscpy(pd->log_path, s->log_path, sizeof(pd->log_path));
	pd->log_seq = s->log_seq;
	pd->log_gen++;
	pd->log_pos = 0;
	pd->synced_pos = 0;
	pd->next_rec_seq = 1;
	mutex_unlock(&pd->sync_mutex);
	mutex_unlock(&pd->log_mutex);
	fput(old);
	pd_info(pd, "switched to log %s (seq %llu); previous ended at %llu\n", pd->log_path,
		pd->log_seq, s->old_end);
	return 0;
}

static int phobos_query(struct phobos_ioc_query *q)
{
	struct phobos_dev *pd;

	lockdep_assert_held(&phobos_ctl_mutex);
	pd = phobos_find(q->name);
	if (!pd)
		return -ENOENT;
	q->minor = pd->minor;
	q->state = READ_ONCE(pd->state);
	mutex_lock(&pd->open_mutex);
	if (pd->open_count)
		q->state |= PHOBOS_STATE_OPEN;
	mutex_unlock(&pd->open_mutex);
	q->completion = READ_ONCE(pd->completion);
	q->codec = pd->codec;
	q->size_bytes = pd->size;
	mutex_lock(&pd->sync_mutex);	/* a consistent (seq, pos, synced) triple */
	q->log_seq = pd->log_seq;
	q->log_pos = READ_ONCE(pd->log_pos);
	q->synced_pos = pd->synced_pos;
	mutex_unlock(&pd->sync_mutex);
	q->wb_log_seq = READ_ONCE(pd->wb_log_seq);
	q->wb_pos = READ_ONCE(pd->wb_pos);
	q->wb_durable_log_seq = READ_ONCE(pd->wb_durable_log_seq);
	q->wb_durable_pos = READ_ONCE(pd->wb_durable_pos);
	q->pending_bytes = READ_ONCE(pd->pending_bytes);
	q->writes = atomic64_read(&pd->writes);
	q->zeroes = atomic64_read(&pd->zeroes);
	q->flushes = atomic64_read(&pd->flushes);
	q->reads = atomic64_read(&pd->reads);
	q->records = atomic64_read(&pd->records);
	q->log_fsyncs = atomic64_read(&pd->log_fsyncs);
	q->log_errors = atomic64_read(&pd->log_errors);
	q->wb_errors = atomic64_read(&pd->wb_errors);
	return 0;
}

static int phobos_set_completion(struct phobos_ioc_set_completion *s)
{
	struct phobos_dev *pd;

	lockdep_assert_held(&phobos_ctl_mutex);
	pd = phobos_find(s->name);
	if (!pd)
		return -ENOENT;
	if (s->completion >= PHOBOS_COMPLETION_COUNT || s->pad) {
		pd_warn(pd, "set completion: bad mode %u\n", s->completion);
		return -EINVAL;
	}
	WRITE_ONCE(pd->completion, s->completion);
	pd_info(pd, "completion mode %s\n",
		s->completion == PHOBOS_COMPLETION_DURABLE ? "durable" : "logged");
	return 0;
}

/* ---- control device ---- */

/* The first two words of every argument struct. */
struct phobos_ioc_head {
	__u32 version;
	__u32 size;
};

/* Check version, size, NUL-terminated name and zero reserved words. */
static int phobos_check_arg(unsigned int cmd, void *arg, size_t size, const char *name,
			    const void *reserved, size_t reserved_len)
{
	const struct phobos_ioc_head *h = arg;

	if (h->version != PHOBOS_IOCTL_VERSION || h->size != size) {
		pr_warn_ratelimited("ioctl %#x: version %u size %u, expected version %u size %zu\n",
				    cmd, h->version, h->size, PHOBOS_IOCTL_VERSION, size);
		return -EINVAL;
	}
	if (name && !phobos_valid_name(name)) {
		pr_warn_ratelimited("ioctl %#x: bad resource name\n", cmd);
		return -EINVAL;
	}
	if (memchr_inv(reserved, 0, reserved_len)) {
		pr_warn_ratelimited("ioctl %#x: reserved fields not zero\n", cmd);
		return -EINVAL;
	}
	return 0;
}

static long phobos_ctl_ioctl(struct file *file, unsigned int cmd, unsigned long uarg)
{
	void __user *up = (void __user *)uarg;
	size_t size = _IOC_SIZE(cmd);
	void *arg;
	int err;

	switch (cmd) {
	case PHOBOS_IOC_VERSION:
	case PHOBOS_IOC_CREATE:
	case PHOBOS_IOC_DESTROY:
	case PHOBOS_IOC_SWITCH_LOG:
	case PHOBOS_IOC_QUERY:
	case PHOBOS_IOC_SET_COMPLETION:
		break;
	default:
		return -ENOTTY;
	}
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	arg = memdup_user(up, size);
	if (IS_ERR(arg))
		return PTR_ERR(arg);

	mutex_lock(&phobos_ctl_mutex);
	switch (cmd) {
	case PHOBOS_IOC_VERSION: {
		struct phobos_ioc_version *v = arg;

		err = phobos_check_arg(cmd, v, sizeof(*v), NULL, v->reserved, sizeof(v->reserved));
		if (!err) {
			v->module_abi = PHOBOS_IOCTL_VERSION;
			v->log_format = PHOBOS_LOG_VERSION;
		}
		break;
	}
	case PHOBOS_IOC_CREATE: {
		struct phobos_ioc_create *c = arg;

		err = phobos_check_arg(cmd, c, sizeof(*c), c->name, c->reserved,
				       sizeof(c->reserved));
		if (!err) {
			c->log_end = c->replayed_records = c->replayed_bytes = 0;
			c->truncated_bytes = 0;
			err = phobos_create(c);
		}
		break;
	}
	case PHOBOS_IOC_DESTROY: {
		struct phobos_ioc_destroy *d = arg;

		err = phobos_check_arg(cmd, d, sizeof(*d), d->name, d->reserved,
				       sizeof(d->reserved));
		if (!err)
			err = phobos_destroy(d);
		break;
	}
	case PHOBOS_IOC_SWITCH_LOG: {
		struct phobos_ioc_switch_log *s = arg;

		err = phobos_check_arg(cmd, s, sizeof(*s), s->name, s->reserved,
				       sizeof(s->reserved));
		if (!err)
			err = phobos_switch_log(s);
		break;
	}
	case PHOBOS_IOC_QUERY: {
		struct phobos_ioc_query *q = arg;

		err = phobos_check_arg(cmd, q, sizeof(*q), q->name, q->reserved,
				       sizeof(q->reserved));
		if (!err)
			err = phobos_query(q);
		break;
	}
	default: {	/* PHOBOS_IOC_SET_COMPLETION */
		struct phobos_ioc_set_completion *s = arg;

		err = phobos_check_arg(cmd, s, sizeof(*s), s->name, s->reserved,
				       sizeof(s->reserved));
		if (!err)
			err = phobos_set_completion(s);
		break;
	}
	}
	mutex_unlock(&phobos_ctl_mutex);

	if (!err && copy_to_user(up, arg, size))
		err = -EFAULT;
	kfree(arg);
	return err;
}

static const struct file_operations phobos_ctl_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = phobos_ctl_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice phobos_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "phobos-ctl",
	.fops = &phobos_ctl_fops,
	.mode = 0600,
};

/* ---- module init / exit ---- */

static int __init phobos_init(void)
{
	int err;

	phobos_major = register_blkdev(0, "phobos");
	if (phobos_major < 0)
		return phobos_major;
	err = misc_register(&phobos_misc);
	if (err)
		goto out_unregister_blkdev;
	pr_info("loaded: ioctl ABI %u, log format %u\n", PHOBOS_IOCTL_VERSION, PHOBOS_LOG_VERSION);
	return 0;

out_unregister_blkdev:
	unregister_blkdev(phobos_major, "phobos");
	return err;
}

static void __exit phobos_exit(void)
{
	struct phobos_dev *pd, *tmp;

	misc_deregister(&phobos_misc);
	/* The module is unused, so no phobos disk is open: tear every resource down. */
	mutex_lock(&phobos_ctl_mutex);
	list_for_each_entry_safe(pd, tmp, &phobos_devs, node) {
		list_del(&pd->node);
		phobos_teardown(pd);
	}
	mutex_unlock(&phobos_ctl_mutex);
	unregister_blkdev(phobos_major, "phobos");
	ida_destroy(&phobos_minors);
	pr_info("unloaded\n");
}

module_init(phobos_init);
module_exit(phobos_exit);

MODULE_DESCRIPTION("Phobos: a block device that logs every write for asynchronous replication");
MODULE_AUTHOR("The Phobos project");
MODULE_LICENSE("GPL");
