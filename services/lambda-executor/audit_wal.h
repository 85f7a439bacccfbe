/* audit_wal.h — the audit write-ahead log's record format (audit_wal.c): framing, CRC and a
 * reader of whole records. Free of the rest of the audit log so the fuzz target links it
 * alone. See docs/audit.md. */
#ifndef LE_AUDIT_WAL_H
#define LE_AUDIT_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* The write-ahead log (audit_wal.c). A segment file is the 8 bytes AUDIT_WAL_MAGIC, then
 * records: u32 little-endian length n (1..AUDIT_WAL_REC_MAX), u32 little-endian CRC-32C of
 * those 4 length bytes and the payload, then the n payload bytes. */
#define AUDIT_WAL_MAGIC "MLAWAL1\n"
#define AUDIT_WAL_MAGIC_LEN 8
#define AUDIT_WAL_HDR 8
#define AUDIT_WAL_REC_MAX (24u << 20)

/* CRC-32C (Castagnoli) of p[0..n), continuing crc (start with 0). */
uint32_t audit_crc32c(uint32_t crc, const void *p, size_t n);

/* Writes the header of a record with payload p[0..n) to hdr. */
void audit_wal_header(const void *p, size_t n, unsigned char hdr[AUDIT_WAL_HDR]);

/* The record at buf[0..len): AUDIT_WAL_OK with the payload in *p, *n and its whole size in
 * *used; AUDIT_WAL_SHORT when buf ends inside it (*used: bytes needed, when known);
 * AUDIT_WAL_BAD for a length out of range or a CRC mismatch. */
enum { AUDIT_WAL_OK = 0, AUDIT_WAL_SHORT, AUDIT_WAL_BAD };
int audit_wal_parse(const unsigned char *buf, size_t len, const unsigned char **p, size_t *n,
                    size_t *used);

/* Reads whole records of the segment open on fd, from byte *off up to byte limit (or EOF),
 * at most max_rows. Each payload is appended to arena (NULL: only counted) with its start in
 * starts[i] and length in lens[i] (both NULL when arena is). *off moves past the last record
 * read; *rows gets how many. Returns AUDIT_WAL_OK when stopped by max_rows or a clean end,
 * AUDIT_WAL_SHORT when bytes of an incomplete record follow (a torn tail), AUDIT_WAL_BAD at a
 * corrupt record (nothing after it is read), ML_ERR on a read error (reason in err). */
int audit_wal_read(int fd, uint64_t *off, uint64_t limit, size_t max_rows, ml_buf *arena,
                   size_t *starts, size_t *lens, size_t *rows, char *err, size_t errlen);

#endif
