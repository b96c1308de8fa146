/* pybind11 bindings of gr::kbsemcom::robust_detector. */
#include <pybind11/complex.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <gnuradio/kbsemcom/robust_detector.h>

namespace py = pybind11;

void bind_robust_detector(py::module& m)
{
    using rd = gr::kbsemcom::robust_detector;
    py::class_<rd, gr::sync_block, gr::block, gr::basic_block, std::shared_ptr<rd>>(
        m,
        "robust_detector",
        "Robust-mode preamble detector (C++): complex stream in, int8 markers out: 1 at item "
        "t + delay() for a preamble starting at sample t, with a tag 'robust_sof' = (C, "
        "cfo_bin). "
        "See include/gnuradio/kbsemcom/robust_detector.h.")
        .def(py::init(&rd::make),
             py::arg("templates"),
             py::arg("energies"),
             py::arg("preamble_energy"),
             py::arg("threshold"),
             py::arg("preselect"),
             py::arg("seg"))
        .def("delay", &rd::delay)
        .def("preselected", &rd::preselected)
        .def("detections", &rd::detections)
        .def("max_statistic", &rd::max_statistic);
}
