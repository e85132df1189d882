// SPDX-License-Identifier: GPL-2.0-only
/*
 * crc32c.c - CRC-32C, reflected polynomial 0x82F63B78.
 *
 * The SSE4.2 instruction crc32q has a latency of 3 cycles but a throughput of one per
 * cycle, so one dependency chain uses a third of the unit. We run three chains over
 * three adjacent blocks of a stripe and merge them. Merging uses linearity: the CRC
 * register after block B, started from state s, equals advance(s, |B|) xor the register
 * after B started from 0, where advance(s, n) is the register after feeding n zero bytes.
 * advance(., n) is linear over GF(2), so a table of 4 x 256 entries (one per byte of s)
 * evaluates it; it is built from the images of the 32 basis vectors.
 */
#include "crc32c.h"

#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <nmmintrin.h>
#define PHOBOS_X86 1
#endif

#define CRC32C_POLY 0x82f63b78u

/* slice[k][b]: the register contribution of byte b seen k bytes before the end of a word. */
static uint32_t slice[8][256];

/* Stripe geometry for the 3-stream path: big stripes for bulk, small for the rest. */
#define STRIPE_BIG 4096u	/* bytes per stream */
#define STRIPE_SMALL 256u
static uint32_t advance_big[4][256];
static uint32_t advance_small[4][256];

static int use_hw;
static int initialised;

static uint32_t step_byte(uint32_t reg, uint8_t byte)
{
	return slice[0][(reg ^ byte) & 0xff] ^ (reg >> 8);
}

static void build_slice_tables(void)
{
	for (uint32_t b = 0; b < 256; b++) {
		uint32_t reg = b;

		for (int bit = 0; bit < 8; bit++)
			reg = (reg >> 1) ^ ((reg & 1) ? CRC32C_POLY : 0);
		slice[0][b] = reg;
	}
	for (uint32_t b = 0; b < 256; b++)
		for (int k = 1; k < 8; k++)
			slice[k][b] = step_byte(slice[k - 1][b], 0);
}

/* advance(reg, n): the register after n zero bytes, computed byte by byte. */
static uint32_t advance_slow(uint32_t reg, size_t n)
{
	while (n--)
		reg = step_byte(reg, 0);
	return reg;
}

static void build_advance_table(uint32_t table[4][256], size_t n)
{
	uint32_t basis[32];

	for (int bit = 0; bit < 32; bit++)
		basis[bit] = advance_slow(1u << bit, n);
	for (int k = 0; k < 4; k++) {
		for (uint32_t b = 0; b < 256; b++) {
			uint32_t image = 0;

			for (int bit = 0; bit < 8; bit++)
				if (b & (1u << bit))
					image ^= basis[8 * k + bit];
			table[k][b] = image;
		}
	}
}

static inline uint32_t advance(const uint32_t table[4][256], uint32_t reg)
{
	return table[0][reg & 0xff] ^ table[1][(reg >> 8) & 0xff] ^
	       table[2][(reg >> 16) & 0xff] ^ table[3][reg >> 24];
}

uint32_t phobos_crc32c_portable(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t reg = ~crc;

	for (; len && ((uintptr_t)p & 7); len--)
		reg = step_byte(reg, *p++);
	for (; len >= 8; len -= 8, p += 8) {
		uint64_t word;

		memcpy(&word, p, 8);
		word ^= reg;	/* little endian: the register meets the first 4 bytes */
		reg = slice[7][word & 0xff] ^ slice[6][(word >> 8) & 0xff] ^
		      slice[5][(word >> 16) & 0xff] ^ slice[4][(word >> 24) & 0xff] ^
		      slice[3][(word >> 32) & 0xff] ^ slice[2][(word >> 40) & 0xff] ^
		      slice[1][(word >> 48) & 0xff] ^ slice[0][word >> 56];
	}
	while (len--)
		reg = step_byte(reg, *p++);
	return ~reg;
}

#ifdef PHOBOS_X86
__attribute__((target("sse4.2")))
static uint64_t hw_stripes(uint64_t reg, const uint8_t **pp, size_t *lenp, size_t stream,
			   const uint32_t table[4][256])
{
	const uint8_t *p = *pp;
	size_t len = *lenp;

	while (len >= 3 * stream) {
		uint64_t r1 = 0, r2 = 0;
		const uint8_t *end = p + stream;

		do {
			uint64_t w0, w1, w2;

			memcpy(&w0, p, 8);
			memcpy(&w1, p + stream, 8);
			memcpy(&w2, p + 2 * stream, 8);
			reg = _mm_crc32_u64(reg, w0);
			r1 = _mm_crc32_u64(r1, w1);
			r2 = _mm_crc32_u64(r2, w2);
			p += 8;
		} while (p < end);
		reg = advance(table, (uint32_t)reg) ^ (uint32_t)r1;
		reg = advance(table, (uint32_t)reg) ^ (uint32_t)r2;
		p += 2 * stream;
		len -= 3 * stream;
	}
	*pp = p;
	*lenp = len;
	return reg;
}

__attribute__((target("sse4.2")))
uint32_t phobos_crc32c_sse42(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t reg = (uint32_t)~crc;

	for (; len && ((uintptr_t)p & 7); len--)
		reg = _mm_crc32_u8((uint32_t)reg, *p++);
	reg = hw_stripes(reg, &p, &len, STRIPE_BIG, advance_big);
	reg = hw_stripes(reg, &p, &len, STRIPE_SMALL, advance_small);
	for (; len >= 8; len -= 8, p += 8) {
		uint64_t word;

		memcpy(&word, p, 8);
		reg = _mm_crc32_u64(reg, word);
	}
	while (len--)
		reg = _mm_crc32_u8((uint32_t)reg, *p++);
	return ~(uint32_t)reg;
}

static int cpu_has_sse42(void)
{
	unsigned int a, b, c, d;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	return (c & bit_SSE4_2) != 0;
}
#else
uint32_t phobos_crc32c_sse42(uint32_t crc, const void *data, size_t len)
{
	return phobos_crc32c_portable(crc, data, len);
}

static int cpu_has_sse42(void)
{
	return 0;
}
#endif

void phobos_crc32c_init(void)
{
	if (initialised)
		return;
	build_slice_tables();
	build_advance_table(advance_big, STRIPE_BIG);
	build_advance_table(advance_small, STRIPE_SMALL);
	/* PHOBOS_CRC32C=portable forces the fallback (tests, odd CPUs). */
	use_hw = cpu_has_sse42();
	{
		const char *force = getenv("PHOBOS_CRC32C");

		if (force && strcmp(force, "portable") == 0)
			use_hw = 0;
	}
	initialised = 1;
}

int phobos_crc32c_hw_available(void)
{
	return use_hw;
}

uint32_t phobos_crc32c(uint32_t crc, const void *data, size_t len)
{
	return use_hw ? phobos_crc32c_sse42(crc, data, len) : phobos_crc32c_portable(crc, data, len);
}
