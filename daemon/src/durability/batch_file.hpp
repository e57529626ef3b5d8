#pragma once
// The disk buffer's file format: one batch per file, "PLNTBUF2", CRC-32 and size of the rest, then
// destination, factories, per line (end offset, factory index, time), the line-protocol body, then
// the topics and each line's topic index. Files of the first format ("PLNTBUF1", without topics)
// are still read. decode_batch() checks every size and index, so a damaged file is an error, never a
// crash.
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "core/batch.hpp"

namespace plantd {

// The format digit of the files encode_batch() writes ("PLNTBUF2"); decode_batch() reads 1 and 2.
inline constexpr char newest_batch_format = '2';
std::string encode_batch(const Batch& batch);
Result<Batch> decode_batch(std::string_view bytes);

}  // namespace plantd
