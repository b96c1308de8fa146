/* pybind11 bindings of gr::kbsemcom::robust_demod. */
#include <pybind11/complex.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <gnuradio/kbsemcom/robust_demod.h>

namespace py = pybind11;

void bind_robust_demod(py::module& m)
{
    using rd = gr::kbsemcom::robust_demod;
    using samples = py::array_t<std::complex<float>, py::array::c_style | py::array::forcecast>;
    py::class_<rd>(m,
                   "robust_demod",
                   "The robust PHY's per-frame demodulation (C++, phy.robust.Demodulator from "
                   "a detected start on). See include/gnuradio/kbsemcom/robust_demod.h.")
        .def(py::init<const std::vector<rd::cd>&,
                      const std::vector<rd::cd>&,
                      const std::vector<rd::cd>&,
                      const std::vector<rd::cd>&,
                      const std::vector<double>&,
                      const std::vector<double>&,
                      const std::vector<int>&,
                      const std::vector<int>&,
                      const std::vector<int>&,
                      const std::vector<int>&,
                      const std::vector<double>&,
                      const std::vector<double>&,
                      int, int, int, int, int, int, double>(),
             py::arg("preamble"), py::arg("seg0"), py::arg("pinv"), py::arg("fourier"),
             py::arg("polarity"), py::arg("pilot_values"), py::arg("pilot_carriers"),
             py::arg("data_carriers"), py::arg("used_carriers"), py::arg("header_map"),
             py::arg("cfo_grid"), py::arg("sro_grid"), py::arg("fft_len"), py::arg("cp_len"),
             py::arg("header_symbols"), py::arg("seg"), py::arg("backoff"),
             py::arg("first_tap"), py::arg("scale"))
        .def(
            "header",
            [](rd& self, samples buf, int64_t t0, int cfo_bin) {
                std::vector<uint8_t> bits;
                {
                    py::gil_scoped_release release;
                    bits = self.header(buf.data(), buf.size(), t0, cfo_bin);
                }
                return py::array_t<uint8_t>(bits.size(), bits.data());
            },
            py::arg("buf"), py::arg("t0"), py::arg("cfo_bin"),
            "Decoded header bits (whitened; empty when the samples are too few).")
        .def(
            "payload",
            [](rd& self,
               samples buf,
               int64_t t0,
               int n_sym,
               py::array_t<int64_t, py::array::c_style | py::array::forcecast> pmap) {
                std::vector<std::complex<float>> out;
                const std::vector<int64_t> map(pmap.data(), pmap.data() + pmap.size());
                {
                    py::gil_scoped_release release;
                    out = self.payload(buf.data(), buf.size(), t0, n_sym, map);
                }
                return py::array_t<std::complex<float>>(out.size(), out.data());
            },
            py::arg("buf"), py::arg("t0"), py::arg("n_sym"), py::arg("pmap"),
            "MMSE-equalised payload symbols of the last header()'s frame, now at t0.")
        .def_property_readonly("cfo", &rd::cfo)
        .def_property_readonly("noise_var", &rd::noise_var)
        .def_property_readonly("snr_db", &rd::snr_db)
        .def_property_readonly("pilot_snr_db", &rd::pilot_snr_db)
        .def_property_readonly("sro", &rd::sro)
        .def_property("fit_stride", &rd::fit_stride, &rd::set_fit_stride,
                      "The phase/CFO/SRO fit's coarse step in grid points, then a local "
                      "refine (1: every grid point); set from phy.robust.Demodulator.");
}
