// Large byte buffers (received messages, upload blocks) go back to a small process-wide cache instead of to
// malloc, and the next buffer of the same size class comes from there.
//
// Why: a GridFS transfer allocates and frees a multi-megabyte buffer for every reply or block. glibc serves
// such sizes from fresh mmap()ed or trimmed heap memory, so every page of every buffer is faulted in again:
// on a 32 MiB download, 5,700 page faults were a quarter of the client's CPU time. A recycled buffer's pages
// are already resident.
//
// Rules. Buffers below min_recycled_bytes are plain operator new. Larger ones are rounded up to a multiple of
// size_class_bytes, so that replies and blocks of nearly the same size share a class. A freed buffer is kept
// while the cache holds less than max_cached_bytes in all, and freed for real otherwise, so the cache adds at
// most that much to the process's memory. Thread-safe (one mutex, taken once per buffer of 256 KiB or more).
//
// Alignment. Buffers of min_recycled_bytes or more start on a page boundary, smaller ones on a 64-byte cache
// line, where malloc gives 16 bytes. The kernel copies a file's page-cache pages and socket data into these
// buffers with `rep movsb`, which on this project's AMD EPYC machines (FSRM) is several times slower when
// the destination is 8 or 16 bytes past a 64-byte boundary: reading a 1 GiB file from the page cache in
// 4 MiB reads took 470-560 ms into such buffers and 139-155 ms into aligned ones, and the file thread of a
// 1 GiB upload spent three quarters of its time in that copy.
#pragma once

#include <cstddef>

namespace gridflow::wire::detail {

inline constexpr std::size_t min_recycled_bytes = 256 * 1024;
inline constexpr std::size_t size_class_bytes = 256 * 1024;
inline constexpr std::size_t max_cached_bytes = 32 * 1024 * 1024;
inline constexpr std::size_t recycled_alignment = 4096;
inline constexpr std::size_t small_alignment = 64;

// The capacity a request of n bytes is served with (n itself below min_recycled_bytes).
[[nodiscard]] std::size_t recycled_capacity(std::size_t n) noexcept;

// Memory for n bytes, aligned as above (so for any fundamental type too). Throws std::bad_alloc.
[[nodiscard]] void* allocate_buffer(std::size_t n);
// Gives back memory from allocate_buffer(n), with the same n.
void deallocate_buffer(void* p, std::size_t n) noexcept;

// Bytes held in the cache now (for tests and diagnostics).
[[nodiscard]] std::size_t cached_buffer_bytes() noexcept;
// Frees every cached buffer for real, as malloc_trim would after a burst of transfers.
void release_cached_buffers() noexcept;

}  // namespace gridflow::wire::detail
