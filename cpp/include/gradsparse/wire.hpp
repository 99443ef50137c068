// gradsparse — the wire format: index codecs, value codecs and multi-tensor messages.
// The byte layout is specified in docs/format.md. Decoding reads untrusted bytes: every
// function that takes a payload validates it and throws ArgumentError (-> ValueError)
// naming what is wrong; none reads or writes outside the buffers it is given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "gradsparse/common.hpp"

namespace gradsparse {
namespace wire {

/// Format version written in every header; decoders refuse any other.
constexpr uint16_t kFormatVersion = 1;
/// Header size in bytes (magic, version, flags, record count, CRC32C, body length).
constexpr size_t kHeaderBytes = 24;
/// Largest number of elements a tensor may declare (keeps every size computation exact).
constexpr uint64_t kMaxElements = uint64_t(1) << 56;
/// Limits on what one record may declare.
constexpr size_t kMaxDims = 32;
constexpr size_t kMaxNameBytes = 65535;

/// Index codecs (wire ids). Auto is a request, never written.
enum class IndexCodec : uint8_t {
    Dense = 0,   ///< no index section: every position, in order
    Raw32 = 1,   ///< little-endian uint32 per index
    Raw64 = 2,   ///< little-endian uint64 per index
    Varint = 3,  ///< delta-1 gaps, byte-aligned: 2-bit length codes, then 1-4 data bytes each
    Rice = 4,    ///< delta-1 gaps, Golomb-Rice with a per-message parameter b
    Bitmap = 5,  ///< one bit per position
    Auto = 255,  ///< the smallest applicable codec for the message at hand
};

/// Value codecs (wire ids).
enum class ValueCodec : uint8_t {
    F32 = 1,
    F64 = 2,
    F16 = 3,
    BF16 = 4,
    Quant = 5,  ///< unbiased stochastic b-bit quantizer, one float32 scale per block
    Sign = 6,   ///< one sign bit per value and one float32 scale (mean |v|)
};

const char* index_codec_name(IndexCodec c);
const char* value_codec_name(ValueCodec c);
/// Parse names ("auto", "raw32", "varint", ...); throws ArgumentError naming `what`.
IndexCodec parse_index_codec(const std::string& name, const char* what = "index_codec");
ValueCodec parse_value_codec(const std::string& name, const char* what = "value_codec");

/// Parameters of the quantizer (ValueCodec::Quant); ignored by the other value codecs.
struct QuantOptions {
    int bits = 8;           ///< 1, 2, 4 or 8
    uint32_t block = 512;   ///< values per scale
    uint64_t seed = 0;      ///< stochastic rounding stream (counter-based)
};

/// One tensor to encode. `indices` (strictly increasing, in [0, numel)) and `values`
/// (`nnz` elements of `dtype`) are borrowed. A dense tensor has no indices and numel values.
struct TensorIn {
    std::string name;
    DType dtype = DType::F32;
    std::vector<uint64_t> shape;
    bool dense = false;
    const int64_t* indices = nullptr;
    uint64_t nnz = 0;
    const void* values = nullptr;
};

struct EncodeOptions {
    IndexCodec index = IndexCodec::Auto;
    ValueCodec value = ValueCodec::F32;
    QuantOptions quant;
    bool single = false;  ///< header flag: the message is one unnamed tensor
};

/// Plans a message: validates the tensors and options, resolves `auto` and the Rice
/// parameters, and knows the exact payload size before any byte is written.
class Encoder {
   public:
    /// `checks_at_write`: for an Encoder that will write, the fixed-size index codecs (raw32,
    /// raw64, bitmap) check order and range while writing instead of while planning (one
    /// pass over the indices fewer; the same errors, from write()).
    Encoder(const std::vector<TensorIn>& tensors, const EncodeOptions& opt, bool checks_at_write = false);
    /// Exact payload length.
    size_t size() const { return size_; }
    /// Writes the payload into out[0..size()). Every section stays inside its planned bytes
    /// and is checked as it is written: tensors changed since planning (another thread)
    /// raise ArgumentError, never a write out of bounds.
    void write(uint8_t* out) const;
    /// The index codec chosen for tensor i (Dense for dense tensors).
    IndexCodec index_codec(size_t i) const { return plans_[i].index; }

   private:
    struct Plan {
        IndexCodec index;
        unsigned rice_b;
        bool index_checked;
        size_t head_bytes, index_bytes, value_bytes;
    };
    const std::vector<TensorIn>& tensors_;
    EncodeOptions opt_;
    std::vector<Plan> plans_;
    size_t size_ = 0;
};

/// Exact length of the payload without building it.
size_t encoded_size(const std::vector<TensorIn>& tensors, const EncodeOptions& opt);
/// The payload bytes.
std::vector<uint8_t> encode(const std::vector<TensorIn>& tensors, const EncodeOptions& opt);

/// One record of a parsed message: its header fields and where its sections lie.
struct RecordView {
    std::string name;
    DType dtype = DType::F32;
    std::vector<uint64_t> shape;
    uint64_t numel = 0;
    uint64_t nnz = 0;
    IndexCodec index = IndexCodec::Dense;
    ValueCodec value = ValueCodec::F32;
    const uint8_t* index_data = nullptr;
    size_t index_len = 0;
    const uint8_t* value_data = nullptr;
    size_t value_len = 0;
    bool dense() const { return index == IndexCodec::Dense; }
};

struct MessageView {
    bool single = false;
    std::vector<RecordView> records;
};

/// Parses and checks the header and every record header (lengths agree with counts,
/// codec ids known, sizes bounded by the payload) without allocating per element.
/// The view borrows `data`.
MessageView parse(const uint8_t* data, size_t len, bool verify_checksum = true);
/// Decodes a record's indices into out[0..nnz) (checks order and range). Not for dense.
void decode_indices(const RecordView& r, int64_t* out);
/// Decodes a record's values into out (nnz, or numel for dense, elements of r.dtype;
/// bfloat16 and float16 as raw 16-bit patterns).
void decode_values(const RecordView& r, void* out);

/// CRC32C (Castagnoli) of n bytes, continuing from `crc` (0 to start).
uint32_t crc32c(uint32_t crc, const uint8_t* data, size_t n);

// ---- single index sections (benchmarks and tests) --------------------------------------

/// Bytes the index section of `codec` takes for these indices (Auto: the chosen one, whose
/// id is written to *chosen). Validates order and range.
size_t index_section_size(IndexCodec codec, const int64_t* idx, uint64_t k, uint64_t numel,
                          IndexCodec* chosen = nullptr);
/// Writes the index section into out (cap bytes); returns the bytes written.
size_t index_section_encode(IndexCodec codec, const int64_t* idx, uint64_t k, uint64_t numel,
                            uint8_t* out, size_t cap);
/// Decodes an index section of k indices below numel into out.
void index_section_decode(IndexCodec codec, const uint8_t* data, size_t len, uint64_t k,
                          uint64_t numel, int64_t* out);
/// Upper bound on the section size for any codec but Bitmap/Auto (used to size buffers).
size_t index_section_bound(IndexCodec codec, uint64_t k, uint64_t numel);
/// Testing hook for the encoder's second read of the indices: plans the section of `codec`
/// for planned[0..k), then writes actual[0..k) into exactly the planned bytes, as
/// Encoder::write does when the caller changed its indices in between. Returns the section;
/// throws ArgumentError ("changed during encoding") when `actual` does not fit the plan.
/// Guard bytes after the section are checked (a write past it is an internal error).
std::vector<uint8_t> index_section_write_replanned(IndexCodec codec, const int64_t* planned,
                                                   const int64_t* actual, uint64_t k, uint64_t numel);

}  // namespace wire
}  // namespace gradsparse
