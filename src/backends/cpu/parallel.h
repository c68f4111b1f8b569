// A small shared thread pool for all CPU kernel loops. Large GEMMs are split
// over it too (OpenBLAS runs single-threaded inside a chunk, so its own idle
// threads never compete with kiln's). Work is split into contiguous chunks;
// with one thread or little work it runs inline.
#pragma once

#include <cstdint>
#include <functional>

namespace kiln::cpu {

int num_threads();             // KILN_NUM_THREADS, else hardware concurrency
void set_num_threads(int n);   // affects later parallel_for calls

// Calls fn(begin, end) over [0, n) in chunks of at least `grain` items.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

}  // namespace kiln::cpu
