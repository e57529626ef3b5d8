#include "writer/gzip.hpp"

namespace plantd {

GzipCompressor::GzipCompressor(int level) {
    // windowBits 15 + 16: gzip header and trailer rather than raw zlib.
    ready_ = deflateInit2(&stream_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK;
}

GzipCompressor::~GzipCompressor() {
    if (ready_) deflateEnd(&stream_);
}

bool GzipCompressor::compress(std::string_view input, std::string& out) {
    if (!ready_ || deflateReset(&stream_) != Z_OK) return false;
    out.resize(deflateBound(&stream_, static_cast<uLong>(input.size())) + 32);
    stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
    stream_.avail_in = static_cast<uInt>(input.size());
    stream_.next_out = reinterpret_cast<Bytef*>(out.data());
    stream_.avail_out = static_cast<uInt>(out.size());
    int rc = deflate(&stream_, Z_FINISH);
    if (rc != Z_STREAM_END) return false;
    out.resize(stream_.total_out);
    return true;
}

}  // namespace plantd
