/* pybind11: a PDU (metadata dict, complex64 payload) built in C++. A receiver publishes one
 * per frame; building the metadata through pmt.to_pmt (a search over every Python type per
 * value) was the largest Python cost per frame. Scalars (bool, int, float, str) are converted
 * here exactly as pmt.to_pmt converts them; any other value goes to the given fallback
 * (pmt.to_pmt). */
#include <pmt/pmt.h>
#include <pybind11/complex.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace {
pmt::pmt_t value_pmt(const py::handle& v, const py::object& fallback)
{
    PyObject* o = v.ptr();
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
} // namespace

void bind_pdu(py::module& m)
{
    m.def(
        "make_pdu_c32",
        [](py::dict meta,
           py::array_t<std::complex<float>, py::array::c_style | py::array::forcecast> data,
           py::object fallback) {
            pmt::pmt_t d = pmt::make_dict();
            for (auto item : meta) {
                const pmt::pmt_t key = PyUnicode_CheckExact(item.first.ptr())
                                           ? pmt::string_to_symbol(
                                                 item.first.cast<std::string>())
                                           : fallback(item.first).cast<pmt::pmt_t>();
                d = pmt::dict_add(d, key, value_pmt(item.second, fallback));
            }
            return pmt::cons(d, pmt::init_c32vector(data.size(), data.data()));
        },
        py::arg("meta"), py::arg("data"), py::arg("fallback"),
        "PDU (metadata dict, c32vector) as pdus.make_pdu builds it; fallback(value) converts "
        "the values that are not bool, int, float or str (pmt.to_pmt).");
}
