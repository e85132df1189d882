/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * phobos_types.h - the only environment the format core sees.
 *
 * kernel/common/ compiles unchanged into phobos.ko and into the userspace addon.
 * This shim gives both the same fixed-width types and the two memory helpers the
 * core needs; nothing else from libc or the kernel is used.
 */
#ifndef PHOBOS_TYPES_H
#define PHOBOS_TYPES_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/string.h>
#define pl_memcpy(d, s, n) memcpy((d), (s), (n))
#define pl_memset(d, c, n) memset((d), (c), (n))
#else
#include <stdint.h>	/* freestanding headers: no libc needed */
#include <stddef.h>
#include <stdbool.h>
typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
#define pl_memcpy(d, s, n) __builtin_memcpy((d), (s), (n))
#define pl_memset(d, c, n) __builtin_memset((d), (c), (n))
#endif

/* The addon compiles these headers as C++ too. */
#ifdef __cplusplus
#define PL_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define PL_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#endif /* PHOBOS_TYPES_H */
