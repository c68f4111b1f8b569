// NumPy .npy files <-> kiln::HostTensor (public API only).
// Reads format 1.0, 2.0 and 3.0 headers with dtypes <f4 <f2 |i1 |u1 <i4 <i8
// |b1 in C order; everything a file says is checked against its size first.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/types.h"

namespace kiln::npy {

// Throws kBadInput naming `origin` for malformed files (bad magic, header,
// shape, fortran order, data size) and kUnsupported for other dtypes.
HostTensor parse(const std::vector<uint8_t>& bytes, const std::string& origin);
HostTensor load(const std::string& path);

// Format 1.0 (2.0 if the header needs it), header padded to 64 bytes.
std::vector<uint8_t> serialize(const HostTensor& t);
void save(const std::string& path, const HostTensor& t);  // atomic

}  // namespace kiln::npy
