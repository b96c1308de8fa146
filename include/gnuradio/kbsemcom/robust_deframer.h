/* gr-kbsemcom: the robust PHY's deframer, in C++ (the RX hot path with frames back to back). */
#ifndef INCLUDED_KBSEMCOM_ROBUST_DEFRAMER_H
#define INCLUDED_KBSEMCOM_ROBUST_DEFRAMER_H

#include <gnuradio/kbsemcom/robust_demod.h>
#include <gnuradio/sync_block.h>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace gr {
namespace kbsemcom {

/*!
 * \brief Demodulates the frames robust_detector found: python/kbsemcom/phy/ofdm_rx.py's
 * robust_deframer (with markers), the same steps and the same PDUs, without Python per frame.
 *
 * Input 0: complex baseband samples; input 1: robust_detector's int8 markers on the same
 * samples (each with its tag robust_sof = (C, cfo bin), ``markers`` samples after its start).
 * Output 'out' (message): per frame whose header passed its CRC a PDU (metadata
 * packet_number, seq, payload_len, snr_db, payload_pilot_snr_db, cfo, sro_ppm, noise_var,
 * frame_start, cfo_hz when samp_rate > 0; payload the c32 equalised symbols); a header
 * stating another length than payload_len (> 0) is a lost record (lost, stage 'phy', reason,
 * the header's fields, cfo, frame_start; empty payload) and only its header is skipped.
 * Gaps: an rx_time tag on input 0 whose time does not continue the previous one's at
 * samp_rate (samp_rate 0: every one after the first) ends the frames cut by it (counted
 * gap_dropped) and starts a fresh search after it.
 *
 * Parameters: demod (a robust_demod built on robust.py's tables; copied), whitening (the
 * header's 64 whitening bits), payload_map (n_sym -> the payload's slot map,
 * robust.RobustParams.payload_map; called once per new length, cached), markers (the
 * detector's delay()), search, header_end (samples from a frame's start to its header's end),
 * sym_len, data_carriers (per OFDM symbol), guard_len, samp_rate (Hz, 0 = unknown),
 * max_buffer (samples a frame may wait for), payload_len (0 = any), first_tap
 * (robust.TAPS[0], as given to demod).
 */
class robust_deframer : virtual public gr::sync_block
{
public:
    typedef std::shared_ptr<robust_deframer> sptr;
    typedef std::function<std::vector<int64_t>(int)> map_fn;

    static sptr make(const robust_demod& demod,
                     const std::vector<uint8_t>& whitening,
                     map_fn payload_map,
                     int markers,
                     int search,
                     int header_end,
                     int sym_len,
                     int data_carriers,
                     int guard_len,
                     double samp_rate,
                     int64_t max_buffer,
                     int payload_len,
                     int first_tap);

    //! Counts (triggers, frames, bad_header, inside_frame, too_long, errors, wrong_length,
    //! gaps, samples_lost, gap_dropped), as robust_deframer.stats() in Python.
    virtual std::map<std::string, int64_t> counts() const = 0;
    //! The last published frame's seq, packet_number (as doubles), snr_db, cfo; empty before.
    virtual std::map<std::string, double> last() const = 0;
    virtual int markers() const = 0;
};

} // namespace kbsemcom
} // namespace gr

#endif
