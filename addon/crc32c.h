/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * crc32c.h - CRC-32C (Castagnoli) for userspace: SSE4.2 with three interleaved
 * streams where the CPU has it, a portable slice-by-8 table version otherwise.
 * The kernel module uses the kernel's crc32c() instead.
 *
 * Convention (zlib style): pass 0 to start, feed the result back to continue:
 * crc32c(crc32c(0, a), b) == crc32c(0, a || b); crc32c(0, "123456789") == 0xe3069283.
 */
#ifndef PHOBOS_ADDON_CRC32C_H
#define PHOBOS_ADDON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Build tables and detect the CPU once; safe to call more than once. */
void phobos_crc32c_init(void);
/* 1 if the SSE4.2 path is in use. */
int phobos_crc32c_hw_available(void);
/* The implementation chosen at run time. */
uint32_t phobos_crc32c(uint32_t crc, const void *data, size_t len);
/* Each implementation, for tests and benchmarks. */
uint32_t phobos_crc32c_portable(uint32_t crc, const void *data, size_t len);
uint32_t phobos_crc32c_sse42(uint32_t crc, const void *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif
