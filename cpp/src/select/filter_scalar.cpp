// gradsparse — scalar kernel table: the reference twin of every SIMD kernel.
#include "filter_generic.hpp"

namespace gradsparse {

const Kernels& kernels_scalar() {
    static const Kernels table{generic::filter_f32, generic::filter_f64, generic::filter_h16,
                               generic::filter_cost_f32,
                               generic::filter_cost_bound_f32, generic::add_f32,
                               generic::cost_range_f32, generic::cost_codes_f32, generic::band_f32,
                               generic::count_f32, generic::emit_f32, generic::cost_keys_f32, generic::band_u64,
                               generic::count_u64, generic::emit_u64};
    return table;
}

}  // namespace gradsparse
