/* The compiled part of gr-kbsemcom: gnuradio.kbsemcom.bindings.kbsemcom_python. */
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_robust_detector(py::module& m);
void bind_robust_demod(py::module& m);
void bind_robust_deframer(py::module& m);
void bind_pdu(py::module& m);

PYBIND11_MODULE(kbsemcom_python, m)
{
    // the base classes (gr::sync_block, ...) are bound by GNU Radio's own module
    py::module::import("gnuradio.gr");
    py::module::import("pmt"); // pmt_t, returned by make_pdu_c32
    bind_robust_detector(m);
    bind_robust_demod(m);
    bind_robust_deframer(m);
    bind_pdu(m);
}
