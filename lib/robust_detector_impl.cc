/* gr-kbsemcom: robust_detector, see include/gnuradio/kbsemcom/robust_detector.h.
 *
 * Why the FFT: the non-coherent statistic e(t) = sum_m |c_m(t)|^2 with
 * c_m(t) = sum_{k<seg} y[t + m seg + k] g[m seg + k] needs 2n multiply-adds per sample when
 * computed directly (2,048 for the 1,024-sample preamble and two phases). Expanded,
 * |c_m|^2 = sum_{k,k'} y[u] y*[u'] g[j] g*[j'], so with the lag products
 * L_l(u) = y[u] y*[u + l] (l = 0..seg-1) and the templates H_l(j) = g[j] g*[j + l] (zero where
 * j and j + l lie in different segments),
 *   e(t) = Re sum_l w_l sum_j L_l(t + j) H_l(j),   w_0 = 1, w_l = 2,
 * eight correlations with fixed templates: overlap-save FFTs, shared by both phases (e is
 * real: one inverse FFT gives both phases'). The normaliser (below) is a window sum of
 * weighted lag products, computed as prefix sums. Only
 * the few positions where e exceeds its expected value (numpy's Detector: the window's mean
 * lag products times sum_j H_l(j)) by the pre-selection factor (about 0.7% of starts, on
 * noise and inside frames) get the direct segment correlations and the CFO bank.
 */
#include <gnuradio/fft/fft.h>
#include <gnuradio/io_signature.h>
#include <gnuradio/kbsemcom/robust_detector.h>
#include <pmt/pmt.h>
#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <memory>
#include <stdexcept>

namespace gr {
namespace kbsemcom {

namespace {
constexpr int FFT_LEN = 8192; // overlap-save block; outputs per block: FFT_LEN - n + 1
}

class robust_detector_impl : public robust_detector
{
    struct hit {
        uint64_t t;
        double coh;
        int bin;
    };

    int d_n, d_seg, d_m, d_nph, d_block, d_delay;
    std::vector<std::vector<gr_complex>> d_g;  // [phase][n] templates
    std::vector<std::vector<gr_complex>> d_hf; // [phase * seg + l][FFT_LEN] spectra (x w_l)
    std::vector<gr_complex> d_c;               // [phase * seg + l] w_l q_l / n
    std::vector<double> d_energy;
    double d_e0, d_threshold, d_preselect;
    fft::fft_complex_fwd d_fwd;
    fft::fft_complex_rev d_inv;
    fft::fft_complex_fwd d_bank; // 2M-point CFO bank
    std::vector<std::vector<gr_complex>> d_acc; // [phase][FFT_LEN]
    std::vector<std::vector<float>> d_e;        // [phase][block]
    std::vector<std::vector<std::complex<double>>> d_q; // [phase][l] sum_j H_l(j)
    std::vector<double> d_cum;                  // running energy (double: the window power)
    std::vector<std::vector<float>> d_sr;       // [phase][span] the normaliser's summands
    std::vector<std::vector<double>> d_pre_sum; // [phase][span + 1] their prefix sums
    std::vector<std::vector<float>> d_gr, d_gi; // [phase][n] templates, split re/im (bank)
    std::vector<float> d_pr, d_pi, d_qr, d_qi;  // [n] the bank's products, their sums
    std::vector<double> d_pw;                   // [2M] the bank's bin powers
    std::vector<uint8_t> d_cand;                // [block] pre-selected in some phase
    uint64_t d_next = 0; // next candidate start (absolute input index)
    std::deque<hit> d_hits; // detections not yet tagged, plus the recent ones they compete with
    uint64_t d_preselected = 0, d_detections = 0;
    double d_max_statistic = 0; // the largest C so far (noise-only statistics)
    const pmt::pmt_t d_key = pmt::intern("robust_sof");

public:
    robust_detector_impl(const std::vector<gr_complex>& templates,
                         const std::vector<double>& energies,
                         double preamble_energy,
                         double threshold,
                         double preselect,
                         int seg)
        : gr::sync_block("robust_detector",
                         gr::io_signature::make(1, 1, sizeof(gr_complex)),
                         gr::io_signature::make(1, 1, sizeof(int8_t))),
          d_seg(seg),
          d_nph(static_cast<int>(energies.size())),
          d_energy(energies),
          d_e0(preamble_energy),
          d_threshold(threshold),
          d_preselect(preselect),
          d_fwd(FFT_LEN),
          d_inv(FFT_LEN),
          d_bank(2 * std::max<int>(1, static_cast<int>(templates.size() /
                                                       std::max<size_t>(1, energies.size()) /
                                                       std::max(1, seg))))
    {
        if (d_nph < 1 || seg < 1 || templates.size() % d_nph)
            throw std::invalid_argument(
                "robust_detector: templates must hold one n-sample template per energy");
        if (d_nph > 8)
            throw std::invalid_argument("robust_detector: at most 8 fractional phases");
        d_n = static_cast<int>(templates.size()) / d_nph;
        if (d_n % seg || d_n >= FFT_LEN / 2)
            throw std::invalid_argument(
                "robust_detector: n must be a multiple of seg and below 4096");
        d_m = d_n / seg;
        d_block = FFT_LEN - d_n + 1;
        // a detection is tagged once every C within n/2 after it is known, before its
        // sample leaves: n (+seg) samples of look-ahead for C, n/2 for the comparison
        d_delay = d_n + d_n / 2 + seg;
        set_history(d_delay + 1);
        for (int ph = 0; ph < d_nph; ph++) {
            d_g.emplace_back(templates.begin() + ph * d_n, templates.begin() + (ph + 1) * d_n);
            const auto& g = d_g.back();
            d_gr.emplace_back(d_n);
            d_gi.emplace_back(d_n);
            for (int j = 0; j < d_n; j++) {
                d_gr[ph][j] = g[j].real();
                d_gi[ph][j] = g[j].imag();
            }
            d_q.emplace_back(seg);
            for (int l = 0; l < seg; l++) {
                for (int j = 0; j < d_n; j++)
                    if (j % seg + l < seg)
                        d_q[ph][l] += std::complex<double>(g[j]) *
                                      std::conj(std::complex<double>(g[j + l]));
                // reversed template, so that the circular convolution is the correlation
                gr_complex* in = d_fwd.get_inbuf();
                std::fill(in, in + FFT_LEN, gr_complex(0));
                for (int j = 0; j < d_n; j++)
                    if (j % seg + l < seg)
                        in[d_n - 1 - j] = (l ? 2.0f : 1.0f) * g[j] * std::conj(g[j + l]);
                d_fwd.execute();
                d_hf.emplace_back(d_fwd.get_outbuf(), d_fwd.get_outbuf() + FFT_LEN);
            }
        }
        // the pre-selection's normaliser, e's expected value for a stationary signal with the
        // window's mean lag products a_l: Re sum_l w_l a_l q_l, i.e. the lag products
        // weighted by w_l q_l / n and summed over a window of n (d_e[nph + ph])
        for (int ph = 0; ph < d_nph; ph++)
            for (int l = 0; l < seg; l++)
                d_c.push_back(gr_complex((l ? 2.0 : 1.0) * d_q[ph][l] / double(d_n)));
        for (int ph = 0; ph < d_nph; ph++) {
            d_acc.emplace_back(FFT_LEN);
            d_sr.emplace_back(FFT_LEN);
        }
        for (int ph = 0; ph < 2 * d_nph; ph++)
            d_e.emplace_back(d_block);
        d_pre_sum.assign(std::max(d_nph, 2), std::vector<double>(FFT_LEN + 1));
        d_cum.resize(FFT_LEN + 1);
        d_pr.resize(d_n);
        d_pi.resize(d_n);
        d_qr.resize(d_n);
        d_qi.resize(d_n);
        d_pw.resize(2 * d_m);
        d_cand.resize(d_block);
        set_tag_propagation_policy(TPP_DONT); // the output is markers, not the samples
    }

    int delay() const override { return d_delay; }
    uint64_t preselected() const override { return d_preselected; }
    uint64_t detections() const override { return d_detections; }
    double max_statistic() const override { return d_max_statistic; }

    // The CFO bank at one start: max over 2M bins of |FFT(c_m)|^2 (and its bin). The
    // segment correlations as one elementwise product (split re/im, vectorises) and
    // pairwise sums of neighbours (8 -> 4 -> 2 -> 1 per segment), not M short reductions.
    double bank(const gr_complex* y, int ph, int* bin)
    {
        const float* a = reinterpret_cast<const float*>(y);
        const float* gr_ = d_gr[ph].data();
        const float* gi_ = d_gi[ph].data();
        float* pr = d_pr.data();
        float* pi = d_pi.data();
        for (int j = 0; j < d_n; j++) {
            const float ar = a[2 * j], ai = a[2 * j + 1];
            pr[j] = ar * gr_[j] - ai * gi_[j];
            pi[j] = ar * gi_[j] + ai * gr_[j];
        }
        if (d_seg & (d_seg - 1)) { // not a power of two: one sum per segment
            for (int m = 0; m < d_m; m++) {
                float sr = 0, si = 0;
                for (int k = 0; k < d_seg; k++) {
                    sr += pr[m * d_seg + k];
                    si += pi[m * d_seg + k];
                }
                pr[m] = sr;
                pi[m] = si;
            }
        } else {
            float* qr = d_qr.data();
            float* qi = d_qi.data();
            for (int len = d_n; len > d_m; len /= 2) { // ping-pong: no in-place dependence
                for (int j = 0; j < len / 2; j++) {
                    qr[j] = pr[2 * j] + pr[2 * j + 1];
                    qi[j] = pi[2 * j] + pi[2 * j + 1];
                }
                std::swap(pr, qr);
                std::swap(pi, qi);
            }
        }
        gr_complex* v = d_bank.get_inbuf();
        for (int m = 0; m < d_m; m++)
            v[m] = gr_complex(pr[m], pi[m]);
        std::fill(v + d_m, v + 2 * d_m, gr_complex(0));
        d_bank.execute();
        const float* s = reinterpret_cast<const float*>(d_bank.get_outbuf());
        double* p = d_pw.data();
        for (int k = 0; k < 2 * d_m; k++)
            p[k] = double(s[2 * k]) * s[2 * k] + double(s[2 * k + 1]) * s[2 * k + 1];
        double best = -1;
        for (int k = 0; k < 2 * d_m; k++)
            best = p[k] > best ? p[k] : best;
        for (int k = 0; k < 2 * d_m; k++)
            if (p[k] == best) {
                *bin = k;
                break;
            }
        return best;
    }

    // Statistics for the starts t0 .. t0 + count - 1 (y points at t0; needs count + n + seg
    // samples); appends the positions whose C is above the threshold to d_hits.
    void chunk(const gr_complex* y, uint64_t t0, int count)
    {
        const int span = count + d_n - 1; // lag products needed
        for (int l = 0; l < d_seg; l++) {
            gr_complex* in = d_fwd.get_inbuf();
            {
                const float* a = reinterpret_cast<const float*>(y);
                const float* b = reinterpret_cast<const float*>(y + l);
                float* o = reinterpret_cast<float*>(in);
                for (int i = 0; i < span; i++) { // y[i] conj(y[i + l]), split (vectorises)
                    o[2 * i] = a[2 * i] * b[2 * i] + a[2 * i + 1] * b[2 * i + 1];
                    o[2 * i + 1] = a[2 * i + 1] * b[2 * i] - a[2 * i] * b[2 * i + 1];
                }
            }
            // the normaliser's summands Re sum_l (w_l q_l / n) L_l(u), while L_l is at hand
            for (int ph = 0; ph < d_nph; ph++) {
                const float cr = d_c[ph * d_seg + l].real(), ci = d_c[ph * d_seg + l].imag();
                const float* o = reinterpret_cast<const float*>(in);
                float* sr = d_sr[ph].data();
                if (l == 0)
                    for (int i = 0; i < span; i++)
                        sr[i] = cr * o[2 * i] - ci * o[2 * i + 1];
                else
                    for (int i = 0; i < span; i++)
                        sr[i] += cr * o[2 * i] - ci * o[2 * i + 1];
            }
            std::fill(in + span, in + FFT_LEN, gr_complex(0));
            d_fwd.execute();
            const float* X = reinterpret_cast<const float*>(d_fwd.get_outbuf());
            for (int ph = 0; ph < d_nph; ph++) {
                // w_l included; the first lag sets the accumulator (no clearing pass)
                const float* H = reinterpret_cast<const float*>(d_hf[ph * d_seg + l].data());
                float* acc = reinterpret_cast<float*>(d_acc[ph].data());
                if (l == 0)
                    for (int k = 0; k < FFT_LEN; k++) {
                        acc[2 * k] = X[2 * k] * H[2 * k] - X[2 * k + 1] * H[2 * k + 1];
                        acc[2 * k + 1] = X[2 * k] * H[2 * k + 1] + X[2 * k + 1] * H[2 * k];
                    }
                else
                    for (int k = 0; k < FFT_LEN; k++) {
                        acc[2 * k] += X[2 * k] * H[2 * k] - X[2 * k + 1] * H[2 * k + 1];
                        acc[2 * k + 1] += X[2 * k] * H[2 * k + 1] + X[2 * k + 1] * H[2 * k];
                    }
            }
        }
        // window sums of the energy and of the normalisers: prefix sums in double (numpy's
        // window means), side by side
        {
            double e = 0, s0 = 0, s1 = 0;
            const float* a0 = d_sr[0].data();
            const float* a1 = d_sr[d_nph > 1 ? 1 : 0].data();
            d_cum[0] = d_pre_sum[0][0] = d_pre_sum[1][0] = 0;
            for (int i = 0; i < span; i++) {
                e += std::norm(std::complex<double>(y[i]));
                s0 += a0[i];
                s1 += a1[i];
                d_cum[i + 1] = e;
                d_pre_sum[0][i + 1] = s0;
                d_pre_sum[1][i + 1] = s1;
            }
            for (int ph = 2; ph < d_nph; ph++) { // more than two phases: a pass each
                double run = 0;
                d_pre_sum[ph][0] = 0;
                for (int i = 0; i < span; i++)
                    d_pre_sum[ph][i + 1] = run += d_sr[ph][i];
            }
            for (int ph = 0; ph < d_nph; ph++)
                for (int i = 0; i < count; i++)
                    d_e[d_nph + ph][i] =
                        static_cast<float>(d_pre_sum[ph][i + d_n] - d_pre_sum[ph][i]);
        }
        // e is the real part of each phase's correlation: two phases share one inverse FFT,
        // each spectrum made Hermitian (its inverse is then real), the second put on the
        // imaginary axis
        for (int ph = 0; ph < d_nph; ph += 2) {
            gr_complex* out = d_inv.get_inbuf();
            const gr_complex* a = d_acc[ph].data();
            const gr_complex* b = ph + 1 < d_nph ? d_acc[ph + 1].data() : nullptr;
            for (int k = 0; k < FFT_LEN; k++) {
                const int mk = (FFT_LEN - k) & (FFT_LEN - 1);
                const gr_complex ha = 0.5f * (a[k] + std::conj(a[mk]));
                const gr_complex hb = b ? 0.5f * (b[k] + std::conj(b[mk])) : gr_complex(0);
                out[k] = gr_complex(ha.real() - hb.imag(), ha.imag() + hb.real());
            }
            d_inv.execute();
            const gr_complex* c = d_inv.get_outbuf();
            for (int i = 0; i < count; i++)
                d_e[ph][i] = c[i + d_n - 1].real() / FFT_LEN;
            if (b)
                for (int i = 0; i < count; i++)
                    d_e[ph + 1][i] = c[i + d_n - 1].imag() / FFT_LEN;
        }
        // the pre-selection test of every start, branch-free (vectorises), then the CFO bank
        // only where it passed (about 0.7% of starts)
        uint8_t* cand = d_cand.data();
        std::fill(cand, cand + count, 0);
        for (int ph = 0; ph < d_nph; ph++) {
            const float* e = d_e[ph].data();
            const float* nrm = d_e[d_nph + ph].data();
            const double pre = d_preselect;
            for (int i = 0; i < count; i++)
                cand[i] |= uint8_t(e[i] > pre * std::max<double>(nrm[i], 1e-30)) << ph;
        }
        for (int i = 0; i < count; i++) {
            if (!cand[i])
                continue;
            const double power = (d_cum[i + d_n] - d_cum[i]) / d_n + 1e-30;
            double coh = -std::numeric_limits<double>::infinity();
            int bin = 0;
            for (int ph = 0; ph < d_nph; ph++) {
                if (!((cand[i] >> ph) & 1))
                    continue;
                d_preselected++;
                int b = 0;
                const double val = bank(y + i, ph, &b) / (power * d_e0);
                if (val > coh) {
                    coh = val;
                    bin = b;
                }
            }
            d_max_statistic = std::max(d_max_statistic, coh);
            if (coh > d_threshold)
                d_hits.push_back({ t0 + i, coh, bin });
        }
    }

    int work(int noutput_items,
             gr_vector_const_void_star& input_items,
             gr_vector_void_star& output_items) override
    {
        const gr_complex* in = static_cast<const gr_complex*>(input_items[0]);
        int8_t* out = static_cast<int8_t*>(output_items[0]);
        // a detection of start t is marked on output item t + d_delay; absolute input
        // sample a sits at in[a - r + d_delay] (history)
        std::fill(out, out + noutput_items, 0);
        const int64_t r = static_cast<int64_t>(nitems_read(0));
        const int64_t end = r + noutput_items - d_n - d_seg; // starts computable now
        while (static_cast<int64_t>(d_next) < end) {
            const int count = static_cast<int>(std::min<int64_t>(d_block, end - d_next));
            chunk(in + (static_cast<int64_t>(d_next) - r + d_delay), d_next, count);
            d_next += count;
        }
        // tag each detection whose neighbourhood (+-n/2) is complete
        const uint64_t written = nitems_written(0);
        const int64_t half = d_n / 2;
        size_t i = 0;
        for (; i < d_hits.size(); i++) {
            const hit& h = d_hits[i];
            if (static_cast<int64_t>(h.t) + half >= static_cast<int64_t>(d_next))
                break;
            bool keep = true;
            for (const hit& o : d_hits) {
                const int64_t dt = static_cast<int64_t>(o.t) - static_cast<int64_t>(h.t);
                if (dt != 0 && std::abs(dt) < half &&
                    (o.coh > h.coh || (o.coh == h.coh && dt < 0))) {
                    keep = false;
                    break;
                }
            }
            const uint64_t offset = h.t + d_delay;
            if (keep && offset >= written && offset < written + noutput_items) {
                out[offset - written] = 1;
                add_item_tag(0, offset, d_key,
                             pmt::make_tuple(pmt::from_double(h.coh), pmt::from_long(h.bin)));
                d_detections++;
            }
        }
        // forget detections that can no longer suppress an undecided one
        while (!d_hits.empty() && i > 0 &&
               static_cast<int64_t>(d_hits.front().t) + half <
                   (i < d_hits.size() ? static_cast<int64_t>(d_hits[i].t)
                                      : static_cast<int64_t>(d_next) - half)) {
            d_hits.pop_front();
            i--;
        }
        return noutput_items;
    }
};

robust_detector::sptr robust_detector::make(const std::vector<gr_complex>& templates,
                                            const std::vector<double>& energies,
                                            double preamble_energy,
                                            double threshold,
                                            double preselect,
                                            int seg)
{
    return gnuradio::make_block_sptr<robust_detector_impl>(
        templates, energies, preamble_energy, threshold, preselect, seg);
}

} // namespace kbsemcom
} // namespace gr
