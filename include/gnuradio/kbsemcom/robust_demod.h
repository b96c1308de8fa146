/* gr-kbsemcom: the robust PHY's per-frame demodulation, in C++ (the RX hot path with frames
 * back to back). */
#ifndef INCLUDED_KBSEMCOM_ROBUST_DEMOD_H
#define INCLUDED_KBSEMCOM_ROBUST_DEMOD_H

#include <gnuradio/fec/generic_decoder.h>
#include <gnuradio/fec/generic_encoder.h>
#include <complex>
#include <cstdint>
#include <vector>

namespace gr {
namespace kbsemcom {

/*!
 * \brief python/kbsemcom/phy/robust.py's Demodulator, from a detected start on: coarse and
 * fine CFO, least-squares channel taps and noise variance on the preamble, the header's
 * grid, phase/CFO tracking on its pilots, soft bits, gr-fec's Viterbi (cc_decoder); then,
 * with the payload length the header states, the frame's phase/CFO/sampling-rate-offset fit
 * on all pilots and the known header (re-encoded by gr-fec's cc_encoder), MMSE equalisation
 * and the symbols. Double precision, as numpy.
 *
 * The tables come from robust.py (the one definition of the frame): the preamble, its phase-0
 * segment filter, the pseudo-inverse of the preamble's convolution matrix, the carrier
 * response of each fitted delay, pilot polarities, the header's slot map, the residual CFO
 * and SRO grids. header() keeps its estimates for the payload() of the same frame.
 */
class robust_demod
{
public:
    typedef std::complex<double> cd;

    robust_demod(const std::vector<cd>& preamble,
                 const std::vector<cd>& seg0,
                 const std::vector<cd>& pinv,    // [ntaps][rows]
                 const std::vector<cd>& fourier, // [fft_len][ntaps]
                 const std::vector<double>& polarity,
                 const std::vector<double>& pilot_values,
                 const std::vector<int>& pilot_carriers,
                 const std::vector<int>& data_carriers,
                 const std::vector<int>& used_carriers,
                 const std::vector<int>& header_map,
                 const std::vector<double>& cfo_grid,
                 const std::vector<double>& sro_grid,
                 int fft_len,
                 int cp_len,
                 int header_symbols,
                 int seg,
                 int backoff,
                 int first_tap,
                 double scale);

    //! The header's decoded bits (Viterbi output, still whitened), or an empty vector when
    //! the samples are too few. buf: samples, t0: the preamble's first sample, cfo_bin: the
    //! detector's CFO bin. Afterwards cfo() and noise_var() hold the estimates.
    std::vector<uint8_t> header(const std::complex<float>* buf, int64_t len, int64_t t0,
                                int cfo_bin);

    //! The n_sym payload symbols of the frame whose header() came last (its start now at t0
    //! in buf, which may have moved since), through slot map pmap
    //! (robust.RobustParams.payload_map); fills snr_db, header_snr_db, pilot_snr_db, sro.
    std::vector<std::complex<float>> payload(const std::complex<float>* buf, int64_t len,
                                             int64_t t0, int n_sym,
                                             const std::vector<int64_t>& pmap);

    double cfo() const { return d_cfo; }
    double noise_var() const { return d_noise_var; }
    //! the payload's SNR: header_snr_db() moved by the tracked channel's predicted error
    double snr_db() const { return d_snr_db; }
    //! 1 / MSE of the header's known symbols (leave-one-out channel estimates)
    double header_snr_db() const { return d_header_snr_db; }
    double pilot_snr_db() const { return d_pilot_snr_db; }
    double sro() const { return d_sro; }
    //! The phase/CFO/SRO fit's coarse step in grid points (then a local refine; 1: every
    //! grid point). phy/robust.py's Demodulator.fit_stride sets it.
    int fit_stride() const { return d_stride; }
    void set_fit_stride(int stride) { d_stride = stride < 1 ? 1 : stride; }

private:
    std::vector<cd> d_pre, d_seg0, d_pinv, d_pinv_t, d_fourier;
    std::vector<double> d_pol, d_pv, d_cfo_grid, d_sro_grid;
    std::vector<int> d_pilots, d_data, d_used, d_map;
    int d_fft, d_cp, d_hs, d_segl, d_backoff, d_tap0, d_ntaps;
    double d_scale;
    int d_stride = 1;
    std::vector<cd> d_tw; // e^{-2 pi i k / fft_len}
    std::vector<int> d_rev; // bit reversal
    // state of the last header()
    int64_t d_t0 = 0;
    int64_t d_header_t0 = -1; // header()'s t0, for which d_Yh holds the header's grid
    std::vector<cd> d_Yh, d_work;
    double d_cfo = 0, d_noise_var = 0, d_snr_db = 0, d_header_snr_db = 0,
           d_pilot_snr_db = 0, d_sro = 0;
    std::vector<cd> d_H;
    std::vector<cd> d_h;      // the preamble's channel taps
    std::vector<cd> d_tapfit; // [ntaps][used]: least-squares taps from the used carriers
    std::vector<cd> d_gram;   // [ntaps][ntaps]: Fu^H Fu over the used carriers
    // each least-squares tap's noise gain: from the used carriers, and on the preamble
    std::vector<double> d_tapnoise, d_pretapvar;
    std::vector<uint8_t> d_bits;
    // the header's code: gr-fec's cc_encoder / cc_decoder (CC_TERMINATED, K=7, rate 1/2)
    int d_header_bits = 0;
    fec::generic_encoder::sptr d_enc;
    fec::generic_decoder::sptr d_dec;
    std::vector<uint8_t> d_soft;
    // channel tracking's fixed-geometry tables (built once; payload()): the split tap fit
    // [ntaps][used] and Fourier [ntaps][fft_len], the observations' times, their sinc
    // correlations [obs][obs] and each payload symbol's with them [symbol][obs]
    std::vector<double> d_gr, d_gi, d_fr, d_fi, d_tobs, d_corr, d_rpay;
    // per-frame work arrays, kept to avoid allocating per frame
    std::vector<double> d_w1, d_w2, d_w3, d_w4, d_w5, d_w6, d_w7, d_w8, d_K;

    std::vector<uint8_t> decode(const std::vector<double>& llr);
    std::vector<uint8_t> encode(const std::vector<uint8_t>& bits);
    void grid(const std::complex<float>* buf, int64_t first, int count, std::vector<cd>& Y);
    void track(const std::vector<cd>& obs, int count, const std::vector<int>& carriers,
               const std::vector<double>& times, bool fit_sro, std::vector<cd>& rot,
               double* sro);
};

} // namespace kbsemcom
} // namespace gr

#endif
