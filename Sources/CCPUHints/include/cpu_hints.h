// Compiler hints that Swift cannot spell: a software prefetch. Static inline, so that Swift's
// clang importer emits the body into the caller and LLVM inlines it to one instruction.
#ifndef QUARRY_CPU_HINTS_H
#define QUARRY_CPU_HINTS_H

/// Asks for the cache line at `p` in L1 ahead of a read-modify-write (prefetchw / prefetcht0).
static inline void quarry_prefetch_for_write(const void *p) { __builtin_prefetch(p, 1, 3); }

/// Asks for the cache line at `p` in L1 ahead of a read.
static inline void quarry_prefetch_for_read(const void *p) { __builtin_prefetch(p, 0, 3); }

#endif
