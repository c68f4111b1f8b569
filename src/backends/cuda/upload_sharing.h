// Shared device copies while a profile plan loads. Its specializations'
// kernels upload the same weights (repacked or converted the same way for
// every batch); while a SharedUploads scope is open on a thread, an upload()
// of bytes equal to an earlier one in the scope returns that device copy
// instead of allocating another. Outside a scope nothing changes. Sound
// because kernels only read what upload() gave them (kernel.h: enqueue must
// not mutate the kernel).
#pragma once

#include <cstddef>
#include <cstdint>

#include "backends/cuda/common.h"

namespace kiln::cuda {

class SharedUploads {
 public:
  SharedUploads();  // opens the scope on this thread; a nested scope joins the open one
  ~SharedUploads();
  SharedUploads(const SharedUploads&) = delete;
  SharedUploads& operator=(const SharedUploads&) = delete;

  // For upload(): the scope's device copy of these bytes (null when none or
  // no scope is open), and recording a fresh copy.
  static DevicePtr find(const void* host, size_t bytes);
  static void store(const void* host, size_t bytes, const DevicePtr& device);

  int64_t bytes_shared() const;  // device bytes not allocated thanks to this scope

 private:
  bool owner_ = false;
};

}  // namespace kiln::cuda
