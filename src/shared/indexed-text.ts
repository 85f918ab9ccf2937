/**
 * The largest value, in UTF-8 bytes, that the library lets into a btree-indexed `text` column: event
 * subjects (pg-boss's group key), workflow subjects, parent subjects and statuses, lock keys. A btree
 * refuses an index row over 2704 bytes (8 kB pages) with `54000`, and a pg-boss job whose group key is
 * too long fails every fetch batch it is in: the queue jams. The tightest index is pg-boss's `job_i7
 * (name, group_id)`: an index tuple header (8 bytes), the queue name (4-byte header + at most 200
 * bytes, the longest queue name the broker accepts; 4-byte aligned) and the group key (4-byte header)
 * leave 2704 - 8 - 204 - 4 = 2488 bytes. PostgreSQL may compress a long key, but random text does
 * not compress, so the uncompressed size is what counts. The memory's and the lock's indexes
 * (`subject`, `key`, `parent_subject`, `root_subject`, `(status, updated_at)`) allow more.
 */
export const MAX_INDEXED_TEXT_BYTES = 2488;

/** `text`'s size in UTF-8 bytes when it is over {@link MAX_INDEXED_TEXT_BYTES}, else `null`. */
export function oversizedIndexedText(text: string): number | null {
  // A UTF-16 code unit takes at most 3 UTF-8 bytes: short strings need no count.
  if (text.length * 3 <= MAX_INDEXED_TEXT_BYTES) return null;
  const bytes = Buffer.byteLength(text, 'utf8');
  return bytes > MAX_INDEXED_TEXT_BYTES ? bytes : null;
}

/** ` is N bytes (UTF-8), over the limit of 2488 bytes of an indexed value (MAX_INDEXED_TEXT_BYTES)` */
export function oversizedIndexedTextReason(bytes: number): string {
  return `is ${bytes} bytes (UTF-8), over the limit of ${MAX_INDEXED_TEXT_BYTES} bytes for an indexed value (MAX_INDEXED_TEXT_BYTES)`;
}
