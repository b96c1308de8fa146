/* pybind11: PDUs (metadata dict, uniform vector payload) built and parsed in C++. Every PDU
 * block converts one PDU in and one out per image; through pmt.to_pmt / pmt.to_python (a
 * search over every type per value) and element lists that was most of the Python cost of the
 * small blocks. Scalars (None, bool, int, float, str) are converted here exactly as pmt.to_pmt
 * and pmt.to_python convert them; any other value goes to the given fallback (pmt.to_pmt /
 * pmt.to_python). */
#include <pmt/pmt.h>
#include <pybind11/complex.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <complex>
#include <cstdint>

namespace py = pybind11;

namespace {
constexpr auto kArray = py::array::c_style | py::array::forcecast;

pmt::pmt_t value_pmt(const py::handle& v, const py::object& fallback)
{
    PyObject* o = v.ptr();
    if (o == Py_None)
        return pmt::get_PMT_NIL();
    if (PyBool_Check(o))
        return pmt::from_bool(o == Py_True);
    if (PyFloat_CheckExact(o))
        return pmt::from_double(PyFloat_AS_DOUBLE(o));
    if (PyLong_CheckExact(o)) {
        int overflow = 0;
        const long long x = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (!overflow && !(x == -1 && PyErr_Occurred()))
            return pmt::from_long(x);
        PyErr_Clear();
    } else if (PyUnicode_CheckExact(o)) {
        return pmt::string_to_symbol(v.cast<std::string>());
    }
    return fallback(v).cast<pmt::pmt_t>();
}

pmt::pmt_t meta_pmt(const py::dict& meta, const py::object& fallback)
{
    pmt::pmt_t d = pmt::make_dict();
    for (auto item : meta) {
        const pmt::pmt_t key = PyUnicode_CheckExact(item.first.ptr())
                                   ? pmt::string_to_symbol(item.first.cast<std::string>())
                                   : fallback(item.first).cast<pmt::pmt_t>();
        d = pmt::dict_add(d, key, value_pmt(item.second, fallback));
    }
    return d;
}

// in the order of pmt.to_python's checks: null, bool, symbol, integer, real
py::object value_py(const pmt::pmt_t& v, const py::object& fallback)
{
    if (pmt::is_null(v))
        return py::none();
    if (pmt::is_bool(v))
        return py::bool_(pmt::to_bool(v));
    if (pmt::is_symbol(v))
        return py::str(pmt::symbol_to_string(v));
    if (pmt::is_integer(v))
        return py::int_(pmt::to_long(v));
    if (pmt::is_real(v))
        return py::float_(pmt::to_double(v));
    return fallback(v);
}

template <typename T>
py::object payload(const pmt::pmt_t& v, const T* (*elements)(pmt::pmt_t, size_t&))
{
    size_t n = 0;
    const T* p = elements(v, n);
    return py::array_t<T>(static_cast<py::ssize_t>(n), p); // a copy the PDU does not share
}
} // namespace

void bind_pdu(py::module& m)
{
    m.def(
        "make_pdu_c32",
        [](py::dict meta, py::array_t<std::complex<float>, kArray> data, py::object fallback) {
            return pmt::cons(meta_pmt(meta, fallback),
                             pmt::init_c32vector(data.size(), data.data()));
        },
        py::arg("meta"), py::arg("data"), py::arg("fallback"),
        "PDU (metadata dict, c32vector) as pdus.make_pdu builds it; fallback(value) converts "
        "the values that are not None, bool, int, float or str (pmt.to_pmt).");
    m.def(
        "make_pdu_f32",
        [](py::dict meta, py::array_t<float, kArray> data, py::object fallback) {
            return pmt::cons(meta_pmt(meta, fallback),
                             pmt::init_f32vector(data.size(), data.data()));
        },
        py::arg("meta"), py::arg("data"), py::arg("fallback"),
        "PDU (metadata dict, f32vector); see make_pdu_c32.");
    m.def(
        "make_pdu_u8",
        [](py::dict meta, py::array_t<std::uint8_t, kArray> data, py::object fallback) {
            return pmt::cons(meta_pmt(meta, fallback),
                             pmt::init_u8vector(data.size(), data.data()));
        },
        py::arg("meta"), py::arg("data"), py::arg("fallback"),
        "PDU (metadata dict, u8vector); see make_pdu_c32.");
    m.def(
        "parse_pdu",
        [](pmt::pmt_t msg, py::object fallback) -> py::object {
            if (!pmt::is_pair(msg))
                return py::none();
            const pmt::pmt_t car = pmt::car(msg), cdr = pmt::cdr(msg);
            py::object data;
            if (pmt::is_u8vector(cdr))
                data = payload<std::uint8_t>(cdr, &pmt::u8vector_elements);
            else if (pmt::is_f32vector(cdr))
                data = payload<float>(cdr, &pmt::f32vector_elements);
            else if (pmt::is_c32vector(cdr))
                data = payload<std::complex<float>>(cdr, &pmt::c32vector_elements);
            else
                return py::none();
            py::dict meta;
            if (pmt::is_dict(car)) {
                for (pmt::pmt_t items = pmt::dict_items(car); pmt::is_pair(items);
                     items = pmt::cdr(items)) {
                    const pmt::pmt_t kv = pmt::car(items);
                    meta[value_py(pmt::car(kv), fallback)] = value_py(pmt::cdr(kv), fallback);
                }
            }
            return py::make_tuple(meta, data);
        },
        py::arg("msg"), py::arg("fallback"),
        "(metadata dict, numpy payload) of a PDU with a u8, f32 or c32 payload as "
        "pdus.parse_pdu returns them, or None for any other message (pdus.parse_pdu handles "
        "those); fallback(pmt) converts the values that are not None, bool, symbol, integer "
        "or real (pmt.to_python).");
}
