#pragma once
// gzip compression of request bodies with a reusable zlib stream (fast level: InfluxDB line protocol
// compresses about 10x even at level 1).
#include <string>
#include <string_view>

#include <zlib.h>

namespace plantd {

class GzipCompressor {
  public:
    explicit GzipCompressor(int level = 1);
    ~GzipCompressor();
    GzipCompressor(const GzipCompressor&) = delete;
    GzipCompressor& operator=(const GzipCompressor&) = delete;

    // Replaces `out` with the gzip stream of `input`. Returns false on a zlib error.
    bool compress(std::string_view input, std::string& out);

  private:
    z_stream stream_{};
    bool ready_ = false;
};

}  // namespace plantd
