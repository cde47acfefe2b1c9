/* crc32c.h - CRC-32C (Castagnoli) for journal entries and checkpoints. */
#ifndef GW_CRC32C_H
#define GW_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC: pass 0 to start. gw_crc32c(0, "123456789", 9) ==
 * 0xE3069283 (the standard check value). */
uint32_t gw_crc32c(uint32_t crc, const void *buf, size_t len);

/* The same function by table lookup, one byte per step: what gw_crc32c uses
 * when the CPU has no CRC-32C instruction, and the reference it is tested
 * against. */
uint32_t gw_crc32c_table(uint32_t crc, const void *buf, size_t len);

#endif
