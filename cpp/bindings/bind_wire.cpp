// gradsparse._core — wire-format entry points (encode, encoded size, decode, single index
// sections for benchmarks and tests). Arguments are checked with the GIL held; the codecs
// run with it released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gradsparse/wire.hpp"
#include "gil.hpp"
#include "pooled.hpp"

namespace py = pybind11;
using namespace gradsparse;

namespace {

DType parse_dtype(const std::string& s) {
    if (s == "float32") return DType::F32;
    if (s == "float64") return DType::F64;
    if (s == "float16") return DType::F16;
    if (s == "bfloat16") return DType::BF16;
    throw py::type_error("values: unsupported dtype " + s + " (float32, float64, float16 or bfloat16)");
}

py::dtype numpy_dtype(DType t) {
    switch (t) {
        case DType::F32: return py::dtype::of<float>();
        case DType::F64: return py::dtype::of<double>();
        case DType::F16: return py::dtype("float16");
        default: return py::dtype::of<uint16_t>();  // bfloat16 bit patterns
    }
}

/// Read-only bytes of any C-contiguous buffer (bytes, bytearray, memoryview, numpy).
struct Bytes {
    py::buffer_info info;
    const uint8_t* data() const { return static_cast<const uint8_t*>(info.ptr); }
    size_t size() const { return static_cast<size_t>(info.size * info.itemsize); }
};

Bytes bytes_of(const py::object& obj, const char* what) {
    if (!PyObject_CheckBuffer(obj.ptr()))
        throw py::type_error(std::string(what) + ": expected bytes, bytearray or memoryview, got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    py::buffer b = py::reinterpret_borrow<py::buffer>(obj);
    Bytes out{b.request()};
    py::ssize_t expect = out.info.itemsize;
    for (py::ssize_t d = out.info.ndim - 1; d >= 0; --d) {
        if (out.info.shape[d] > 1 && out.info.strides[d] != expect)
            throw py::value_error(std::string(what) + ": buffer must be C-contiguous");
        expect *= out.info.shape[d];
    }
    return out;
}

struct Records {
    std::vector<wire::TensorIn> tensors;
    std::vector<py::array> keep;  // keeps the arrays alive while the GIL is released
};

// records: list of (name, dtype, shape, dense, indices | None, values), already validated
// and made C-contiguous by gradsparse.wire.
Records make_records(const py::list& records) {
    Records r;
    r.tensors.reserve(records.size());
    for (const auto& item : records) {
        py::tuple t = item.cast<py::tuple>();
        if (t.size() != 6) throw py::value_error("update: malformed record");
        wire::TensorIn in;
        in.name = t[0].cast<std::string>();
        in.dtype = parse_dtype(t[1].cast<std::string>());
        in.shape = t[2].cast<std::vector<uint64_t>>();
        in.dense = t[3].cast<bool>();
        py::array vals = t[5].cast<py::array>();
        if (!(vals.flags() & py::array::c_style) || static_cast<size_t>(vals.itemsize()) != dtype_size(in.dtype))
            throw py::value_error("values: must be a C-contiguous array of the declared dtype");
        in.values = vals.data();
        in.nnz = static_cast<uint64_t>(vals.size());
        r.keep.push_back(vals);
        if (!in.dense) {
            py::array_t<int64_t, py::array::c_style | py::array::forcecast> idx =
                py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(t[4]);
            if (!idx) throw py::type_error("indices: must be an integer array");
            if (static_cast<uint64_t>(idx.size()) != in.nnz)
                throw py::value_error("values: must have as many entries as indices");
            in.indices = idx.data();
            r.keep.push_back(idx);
        }
        r.tensors.push_back(std::move(in));
    }
    return r;
}

wire::EncodeOptions make_options(const std::string& index_codec, const std::string& value_codec, int bits,
                                 int64_t block, uint64_t seed, bool single) {
    wire::EncodeOptions o;
    o.index = wire::parse_index_codec(index_codec);
    o.value = wire::parse_value_codec(value_codec);
    if (block < 1 || block > 0xFFFFFFFFll) throw py::value_error("block: must be in [1, 2^32)");
    o.quant.bits = bits;
    o.quant.block = static_cast<uint32_t>(block);
    o.quant.seed = seed;
    o.single = single;
    return o;
}

// Records, options and a planned Encoder (which borrows the records' tensors).
struct Planned {
    Records records;
    std::unique_ptr<wire::Encoder> encoder;
};

std::unique_ptr<Planned> plan_py(const py::list& records, const std::string& index_codec,
                                 const std::string& value_codec, int bits, int64_t block, uint64_t seed,
                                 bool single, bool checks_at_write = false) {
    auto p = std::make_unique<Planned>();
    p->records = make_records(records);
    const wire::EncodeOptions opt = make_options(index_codec, value_codec, bits, block, seed, single);
    GilRelease nogil;
    p->encoder = std::make_unique<wire::Encoder>(p->records.tensors, opt, checks_at_write);
    return p;
}

py::bytes encode_py(const py::list& records, const std::string& index_codec, const std::string& value_codec,
                    int bits, int64_t block, uint64_t seed, bool single) {
    // The encoder plans, then reads the indices again while writing with the GIL released:
    // its writers stay inside the planned sections and check what they write, so arrays
    // changed meanwhile by another thread raise ValueError (raw/bitmap are checked only there).
    const auto p = plan_py(records, index_codec, value_codec, bits, block, seed, single, true);
    PyObject* obj = PyBytes_FromStringAndSize(nullptr, static_cast<py::ssize_t>(p->encoder->size()));
    if (!obj) throw py::error_already_set();
    py::bytes out = py::reinterpret_steal<py::bytes>(obj);
    uint8_t* dst = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(obj));
    {
        GilRelease nogil;
        p->encoder->write(dst);
    }
    return out;
}

py::tuple encoded_size_py(const py::list& records, const std::string& index_codec, const std::string& value_codec,
                          int bits, int64_t block, uint64_t seed, bool single) {
    const auto p = plan_py(records, index_codec, value_codec, bits, block, seed, single);
    py::list chosen;
    for (size_t i = 0; i < p->records.tensors.size(); ++i)
        chosen.append(wire::index_codec_name(p->encoder->index_codec(i)));
    return py::make_tuple(p->encoder->size(), chosen);
}

// -> (single, [(name bytes, dtype, shape, index codec, value codec, indices | None, values)])
py::tuple decode_py(const py::object& data, bool verify_checksum) {
    Bytes b = bytes_of(data, "data");
    wire::MessageView m;
    {
        GilRelease nogil;
        m = wire::parse(b.data(), b.size(), verify_checksum);
    }
    py::list out;
    for (const wire::RecordView& r : m.records) {
        py::object idx = py::none();
        py::array vals = output_array(numpy_dtype(r.dtype), static_cast<size_t>(r.nnz));
        void* vptr = vals.mutable_data();
        int64_t* iptr = nullptr;
        if (!r.dense()) {
            py::array ia = output_array(py::dtype::of<int64_t>(), static_cast<size_t>(r.nnz));
            iptr = static_cast<int64_t*>(ia.mutable_data());
            idx = ia;
        }
        {
            GilRelease nogil;
            if (iptr) wire::decode_indices(r, iptr);
            wire::decode_values(r, vptr);
        }
        std::vector<py::ssize_t> shape(r.shape.begin(), r.shape.end());
        out.append(py::make_tuple(py::bytes(r.name), dtype_name(r.dtype), py::tuple(py::cast(shape)),
                                  wire::index_codec_name(r.index), wire::value_codec_name(r.value), idx, vals));
    }
    return py::make_tuple(m.single, out);
}

using IndexArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

py::tuple index_size_py(const std::string& codec, const IndexArray& idx, uint64_t numel) {
    const wire::IndexCodec c = wire::parse_index_codec(codec, "codec");
    wire::IndexCodec chosen;
    size_t n;
    {
        GilRelease nogil;
        n = wire::index_section_size(c, idx.data(), static_cast<uint64_t>(idx.size()), numel, &chosen);
    }
    return py::make_tuple(n, wire::index_codec_name(chosen));
}

// Encodes one index section into `out` (a writable uint8 array) and returns the byte count,
// or returns new bytes when out is None.
py::object index_encode_py(const std::string& codec, const IndexArray& idx, uint64_t numel, const py::object& out) {
    wire::IndexCodec c = wire::parse_index_codec(codec, "codec");
    const uint64_t k = static_cast<uint64_t>(idx.size());
    if (c == wire::IndexCodec::Auto) {
        GilRelease nogil;
        wire::index_section_size(c, idx.data(), k, numel, &c);
    }
    if (out.is_none()) {
        std::vector<uint8_t> buf;
        size_t n;
        {
            GilRelease nogil;
            // Exact size; only the varint kernel needs its upper bound (vector stores).
            size_t need = wire::index_section_size(c, idx.data(), k, numel);
            if (c == wire::IndexCodec::Varint) need = wire::index_section_bound(c, k, numel);
            buf.resize(need + 64);
            n = wire::index_section_encode(c, idx.data(), k, numel, buf.data(), buf.size());
        }
        return py::bytes(reinterpret_cast<const char*>(buf.data()), n);
    }
    py::array_t<uint8_t, py::array::c_style> o = out.cast<py::array_t<uint8_t, py::array::c_style>>();
    if (!o.writeable()) throw py::value_error("out: must be writable");
    size_t n;
    {
        GilRelease nogil;
        n = wire::index_section_encode(c, idx.data(), k, numel, o.mutable_data(), static_cast<size_t>(o.size()));
    }
    return py::int_(n);
}

py::array index_decode_py(const std::string& codec, const py::object& data, uint64_t k, uint64_t numel,
                          const py::object& out) {
    const wire::IndexCodec c = wire::parse_index_codec(codec, "codec");
    Bytes b = bytes_of(data, "data");
    if (k > numel) throw py::value_error("k: more indices than elements");
    if (k > 8 * static_cast<uint64_t>(b.size()) + 8)
        throw py::value_error("k: more indices than the section can hold");
    py::array_t<int64_t, py::array::c_style> o;
    if (out.is_none()) {
        o = output_array(py::dtype::of<int64_t>(), static_cast<size_t>(k));
    } else {
        o = out.cast<py::array_t<int64_t, py::array::c_style>>();
        if (!o.writeable() || static_cast<uint64_t>(o.size()) != k)
            throw py::value_error("out: must be a writable int64 array of k elements");
    }
    int64_t* dst = o.mutable_data();
    {
        GilRelease nogil;
        wire::index_section_decode(c, b.data(), b.size(), k, numel, dst);
    }
    return o;
}

// Testing hook: plans the section for `planned`, writes `actual` into exactly the planned
// bytes (wire::index_section_write_replanned), as encode does when the indices change
// between its two reads of them.
py::bytes index_write_replanned_py(const std::string& codec, const IndexArray& planned, const IndexArray& actual,
                                   uint64_t numel) {
    const wire::IndexCodec c = wire::parse_index_codec(codec, "codec");
    if (planned.size() != actual.size()) throw py::value_error("actual: must have as many indices as planned");
    std::vector<uint8_t> sec =
        wire::index_section_write_replanned(c, planned.data(), actual.data(), static_cast<uint64_t>(planned.size()), numel);
    return py::bytes(reinterpret_cast<const char*>(sec.data()), sec.size());
}

uint32_t crc32c_py(const py::object& data, uint32_t crc) {
    Bytes b = bytes_of(data, "data");
    GilRelease nogil;
    return wire::crc32c(crc, b.data(), b.size());
}

}  // namespace

void register_wire(py::module_& m) {
    m.def("wire_encode", &encode_py, py::arg("records"), py::arg("index_codec"), py::arg("value_codec"),
          py::arg("bits"), py::arg("block"), py::arg("seed"), py::arg("single"),
          "Encodes prepared records into one payload (bytes).");
    m.def("wire_encoded_size", &encoded_size_py, py::arg("records"), py::arg("index_codec"),
          py::arg("value_codec"), py::arg("bits"), py::arg("block"), py::arg("seed"), py::arg("single"),
          "Exact payload length and the index codec chosen per record.");
    m.def("wire_decode", &decode_py, py::arg("data"), py::arg("verify_checksum") = true,
          "Validates and decodes a payload: (single, records).");
    m.def("index_size", &index_size_py, py::arg("codec"), py::arg("indices"), py::arg("numel"),
          "Bytes of one index section and the codec used.");
    m.def("index_encode", &index_encode_py, py::arg("codec"), py::arg("indices"), py::arg("numel"),
          py::arg("out") = py::none(), "Encodes one index section (bytes, or the count written into out).");
    m.def("index_decode", &index_decode_py, py::arg("codec"), py::arg("data"), py::arg("k"), py::arg("numel"),
          py::arg("out") = py::none(), "Decodes one index section of k indices (int64 array).");
    m.def("_index_write_replanned", &index_write_replanned_py, py::arg("codec"), py::arg("planned"),
          py::arg("actual"), py::arg("numel"),
          "Testing hook: plans an index section for `planned`, writes `actual` into exactly that many bytes.");
    m.def("crc32c", &crc32c_py, py::arg("data"), py::arg("crc") = 0, "CRC32C (Castagnoli) of a buffer.");
    m.attr("WIRE_FORMAT_VERSION") = wire::kFormatVersion;
}
