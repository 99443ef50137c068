// gradsparse — wire internals shared by the index, value and message units.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gradsparse/wire.hpp"

namespace gradsparse {
namespace wire {

/// Which index codec a record uses and its exact section size.
struct IndexPlan {
    IndexCodec codec = IndexCodec::Raw64;
    unsigned rice_b = 0;
    size_t bytes = 0;
    bool checked = true;  ///< order and range were checked while planning
};

/// Validates indices (strictly increasing, in [0, numel)) and sizes the section; resolves Auto.
/// With `check` false, raw32/raw64/bitmap are only sized (their writer checks the indices).
IndexPlan plan_indices(IndexCodec codec, const int64_t* idx, uint64_t k, uint64_t numel, bool check = true);
/// Writes the planned section (cap bytes available, >= index_section_bound); returns its size.
size_t write_indices(const IndexPlan& p, const int64_t* idx, uint64_t k, uint64_t numel, uint8_t* out, size_t cap);
/// Decodes and validates a section.
void read_indices(IndexCodec codec, const uint8_t* data, size_t len, uint64_t k, uint64_t numel, int64_t* out);
/// Fewest bytes a valid section of k indices can take (bounds what a header may claim).
size_t min_index_section(IndexCodec codec, uint64_t k, uint64_t numel);

/// Exact value-section size for n values.
size_t value_section_size(ValueCodec codec, uint64_t n, const QuantOptions& q);
/// Fewest bytes a valid value section of n values can take.
size_t min_value_section(ValueCodec codec, uint64_t n);
/// Checks quantizer options (bits, block), naming the argument.
void check_quant_options(const QuantOptions& q);
/// Encodes n values of dtype src; `stream` separates the random streams of records.
void write_values(ValueCodec codec, DType src, const void* values, uint64_t n, const QuantOptions& q,
                  uint64_t stream, uint8_t* out);
/// Decodes and validates a value section into n values of dtype dst.
void read_values(ValueCodec codec, const uint8_t* data, size_t len, uint64_t n, DType dst, void* out);

}  // namespace wire
}  // namespace gradsparse
