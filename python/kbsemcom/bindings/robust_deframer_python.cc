/* pybind11 bindings of gr::kbsemcom::robust_deframer. */
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <gnuradio/kbsemcom/robust_deframer.h>

namespace py = pybind11;

void bind_robust_deframer(py::module& m)
{
    using rd = gr::kbsemcom::robust_deframer;
    py::class_<rd, gr::sync_block, gr::block, gr::basic_block, std::shared_ptr<rd>>(
        m,
        "robust_deframer",
        "Robust-mode deframer (C++): samples and robust_detector's markers in, one PDU per "
        "frame (or lost record) out on 'out', as phy.ofdm_rx.robust_deframer. See "
        "include/gnuradio/kbsemcom/robust_deframer.h.")
        // payload_map is a Python callable, called (with the GIL) once per new length
        .def(py::init(&rd::make),
             py::arg("demod"),
             py::arg("whitening"),
             py::arg("payload_map"),
             py::arg("markers"),
             py::arg("search"),
             py::arg("header_end"),
             py::arg("sym_len"),
             py::arg("data_carriers"),
             py::arg("guard_len"),
             py::arg("samp_rate"),
             py::arg("max_buffer"),
             py::arg("payload_len"),
             py::arg("first_tap"))
        .def_property_readonly("markers", &rd::markers)
        .def(
            "stats",
            [](const rd& self) {
                py::dict out;
                for (const auto& kv : self.counts())
                    out[py::str(kv.first)] = kv.second;
                py::dict last;
                for (const auto& kv : self.last()) {
                    if (kv.first == "seq" || kv.first == "packet_number")
                        last[py::str(kv.first)] = static_cast<int64_t>(kv.second);
                    else
                        last[py::str(kv.first)] = kv.second;
                }
                out["last"] = last;
                return out;
            },
            "Counts as phy.ofdm_rx.robust_deframer.stats(): triggers, frames, bad_header, "
            "inside_frame, too_long, errors, wrong_length, gaps, samples_lost, gap_dropped; "
            "last: the last frame's seq, packet_number, snr_db, cfo.");
}
