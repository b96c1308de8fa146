/* gr-kbsemcom: the robust PHY's preamble detector, in C++ (the RX hot path). */
#ifndef INCLUDED_KBSEMCOM_ROBUST_DETECTOR_H
#define INCLUDED_KBSEMCOM_ROBUST_DETECTOR_H

#include <gnuradio/sync_block.h>
#include <cstdint>
#include <vector>

namespace gr {
namespace kbsemcom {

/*!
 * \brief Finds robust-mode preambles (python/kbsemcom/phy/robust.py, Detector) in a stream.
 *
 * The same statistic as the numpy Detector: per fractional phase, the non-coherent sum of
 * the M = n / seg segment correlations pre-selects positions, and there the segment
 * correlations are combined over a bank of 2M CFO hypotheses (FFT). The non-coherent sum is
 * computed for every sample through FFTs of the received lag products (8 lags), not as 2n
 * multiply-adds per sample.
 *
 * Input: complex baseband samples. Output: int8 markers, one per input sample: 1 at item
 * t + delay() for a preamble detected to start at input sample t, else 0 (the look-ahead
 * the statistic needs; the marker never lags its frame's end, so a frame is not held back
 * when the samples stop after it). Each marker carries a tag "robust_sof" = (C, cfo_bin):
 * the statistic and the CFO bin.
 * A detection is a local maximum of C above the threshold, no larger C within n/2 samples.
 *
 * Parameters: templates (per phase, the conjugate of the preamble delayed by that phase, n
 * samples each, concatenated), energies (per phase, the template's energy), preamble_energy
 * (of the preamble itself: the CFO bank's normalisation), threshold, preselect, seg
 * (samples per coherent segment).
 */
class robust_detector : virtual public gr::sync_block
{
public:
    typedef std::shared_ptr<robust_detector> sptr;

    static sptr make(const std::vector<gr_complex>& templates,
                     const std::vector<double>& energies,
                     double preamble_energy,
                     double threshold,
                     double preselect,
                     int seg);

    //! Samples between an input sample and its copy at the output.
    virtual int delay() const = 0;
    //! Positions that passed the pre-selection, and detections, so far.
    virtual uint64_t preselected() const = 0;
    virtual uint64_t detections() const = 0;
    //! The largest statistic C seen so far (0 before any pre-selected start).
    virtual double max_statistic() const = 0;
};

} // namespace kbsemcom
} // namespace gr

#endif
