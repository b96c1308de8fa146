/* gr-kbsemcom: robust_demod, see include/gnuradio/kbsemcom/robust_demod.h. Each step names
 * the lines of phy/robust.py (Demodulator.demodulate) it follows; the tests compare both. */
#include <gnuradio/fec/cc_decoder.h>
#include <gnuradio/fec/cc_encoder.h>
#include <gnuradio/kbsemcom/robust_demod.h>
#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace gr {
namespace kbsemcom {

namespace {
constexpr double PI = 3.14159265358979323846;
// the header's K=7 code (as 802.11a; robust.py G1, G2) in gr-fec's CC_TERMINATED mode, and
// its soft-symbol scale (robust.py SOFT_SCALE)
constexpr int G1 = 0133, G2 = 0171;
constexpr double SOFT_SCALE = 48.0;

inline std::complex<double> cis(double a) { return { std::cos(a), std::sin(a) }; }

// out[j] = w0 step^j, j < count: four interleaved recurrences (a single one waits on each
// complex product's latency)
void phasors(std::complex<double> w0, std::complex<double> step, int count,
             std::complex<double>* out)
{
    const std::complex<double> s2 = step * step, s4 = s2 * s2;
    std::complex<double> a = w0, b = w0 * step, c = w0 * s2, d = b * s2;
    int j = 0;
    for (; j + 3 < count; j += 4, a *= s4, b *= s4, c *= s4, d *= s4) {
        out[j] = a;
        out[j + 1] = b;
        out[j + 2] = c;
        out[j + 3] = d;
    }
    for (const std::complex<double> r : { a, b, c })
        if (j < count)
            out[j++] = r;
}

// the channel tracker's design (robust.py TRACK_DOPPLER, TRACK_FLOOR)
constexpr double TRACK_DOPPLER = 1e-4, TRACK_FLOOR = 1e-4;

inline double sinc(double x) { return x == 0 ? 1.0 : std::sin(PI * x) / (PI * x); }

// a (n x n, row-major) replaced by its inverse: Gauss-Jordan, partial pivoting
template <typename T>
void invert(std::vector<T>& a, int n)
{
    std::vector<T> b(size_t(n) * n, T(0));
    for (int i = 0; i < n; i++)
        b[size_t(i) * n + i] = T(1);
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int r = c + 1; r < n; r++)
            if (std::abs(a[size_t(r) * n + c]) > std::abs(a[size_t(p) * n + c]))
                p = r;
        if (p != c)
            for (int j = 0; j < n; j++) {
                std::swap(a[size_t(p) * n + j], a[size_t(c) * n + j]);
                std::swap(b[size_t(p) * n + j], b[size_t(c) * n + j]);
            }
        const T inv = T(1) / a[size_t(c) * n + c];
        for (int j = 0; j < n; j++) {
            a[size_t(c) * n + j] *= inv;
            b[size_t(c) * n + j] *= inv;
        }
        for (int r = 0; r < n; r++) {
            const T f = a[size_t(r) * n + c];
            if (r == c || f == T(0))
                continue;
            for (int j = 0; j < n; j++) {
                a[size_t(r) * n + j] -= f * a[size_t(c) * n + j];
                b[size_t(r) * n + j] -= f * b[size_t(c) * n + j];
            }
        }
    }
    a.swap(b);
}

// a (n x n, row-major, symmetric positive definite) replaced by its inverse: Cholesky
// a = L L^T, X = L^-1, a^-1 = X^T X (about n^3 / 2 multiply-adds against Gauss-Jordan's
// 2 n^3; the channel tracker's Wiener system, once per frame). work: scratch.
void invert_spd(std::vector<double>& a, int n, std::vector<double>& work)
{
    std::vector<double>& L = work;
    L.assign(size_t(n) * n, 0.0);
    for (int j = 0; j < n; j++) {
        double s = a[size_t(j) * n + j];
        for (int k = 0; k < j; k++)
            s -= L[size_t(j) * n + k] * L[size_t(j) * n + k];
        if (!(s > 0))
            throw std::runtime_error("robust_demod: the tracker's Wiener system is not "
                                     "positive definite");
        const double d = std::sqrt(s);
        L[size_t(j) * n + j] = d;
        for (int i = j + 1; i < n; i++) {
            double t = a[size_t(i) * n + j];
            for (int k = 0; k < j; k++)
                t -= L[size_t(i) * n + k] * L[size_t(j) * n + k];
            L[size_t(i) * n + j] = t / d;
        }
    }
    // X = L^-1 (lower), written over a's lower triangle row by row
    std::fill(a.begin(), a.end(), 0.0);
    for (int i = 0; i < n; i++) {
        a[size_t(i) * n + i] = 1.0 / L[size_t(i) * n + i];
        for (int j = 0; j < i; j++) {
            double t = 0;
            for (int k = j; k < i; k++)
                t -= L[size_t(i) * n + k] * a[size_t(k) * n + j];
            a[size_t(i) * n + j] = t / L[size_t(i) * n + i];
        }
    }
    // a^-1[i][j] = sum_{k >= i, j} X[k][i] X[k][j]: accumulate the lower triangle in L
    std::fill(L.begin(), L.end(), 0.0);
    for (int k = 0; k < n; k++) {
        const double* x = &a[size_t(k) * n];
        for (int i = 0; i <= k; i++) {
            double* out = &L[size_t(i) * n];
            const double xi = x[i];
            for (int j = 0; j <= i; j++)
                out[j] += xi * x[j];
        }
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            L[size_t(j) * n + i] = L[size_t(i) * n + j];
    a.swap(L);
}

} // namespace

// robust.py viterbi: LLRs (> 0: coded bit 0) to gr-fec's 8-bit soft symbols, 128 - llr
// scaled to a mean |llr| of SOFT_SCALE (rounded half to even, as numpy's rint), then
// gr-fec's cc_decoder
std::vector<uint8_t> robust_demod::decode(const std::vector<double>& llr)
{
    double m = 0;
    for (const double l : llr)
        m += std::abs(l);
    m /= double(llr.size());
    const double f = m > 0 ? SOFT_SCALE / m : 1.0;
    d_soft.resize(llr.size());
    for (size_t i = 0; i < llr.size(); i++)
        d_soft[i] = static_cast<uint8_t>(
            std::min(255.0, std::max(0.0, std::nearbyint(128.0 - llr[i] * f))));
    std::vector<uint8_t> bits(d_header_bits);
    d_dec->generic_work(d_soft.data(), bits.data());
    return bits;
}

std::vector<uint8_t> robust_demod::encode(const std::vector<uint8_t>& bits)
{
    std::vector<uint8_t> in(bits), out(2 * (bits.size() + 6));
    d_enc->generic_work(in.data(), out.data());
    return out;
}

robust_demod::robust_demod(const std::vector<cd>& preamble,
                           const std::vector<cd>& seg0,
                           const std::vector<cd>& pinv,
                           const std::vector<cd>& fourier,
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
                           double scale)
    : d_pre(preamble),
      d_seg0(seg0),
      d_pinv(pinv),
      d_fourier(fourier),
      d_pol(polarity),
      d_pv(pilot_values),
      d_cfo_grid(cfo_grid),
      d_sro_grid(sro_grid),
      d_pilots(pilot_carriers),
      d_data(data_carriers),
      d_used(used_carriers),
      d_map(header_map),
      d_fft(fft_len),
      d_cp(cp_len),
      d_hs(header_symbols),
      d_segl(seg),
      d_backoff(backoff),
      d_tap0(first_tap),
      d_scale(scale)
{
    d_ntaps = static_cast<int>(fourier.size()) / fft_len;
    if (d_ntaps < 1 || pinv.size() != size_t(d_ntaps) * (preamble.size() - d_ntaps + 1) ||
        seg0.size() != preamble.size() || header_map.size() != size_t(header_symbols) *
                                                                  data_carriers.size())
        throw std::invalid_argument("robust_demod: tables of inconsistent sizes");
    if (d_fft & (d_fft - 1))
        throw std::invalid_argument("robust_demod: fft_len must be a power of 2");
    // the header's information bits: coded = 2 (bits + 6), the largest slot index + 1
    const int coded = *std::max_element(d_map.begin(), d_map.end()) + 1;
    d_header_bits = coded / 2 - 6;
    if (coded % 2 || d_header_bits < 1)
        throw std::invalid_argument("robust_demod: header_map does not address 2 (bits + 6) "
                                    "coded bits");
    d_enc = fec::code::cc_encoder::make(d_header_bits, 7, 2, { G1, G2 }, 0,
                                        CC_TERMINATED, false);
    d_dec = fec::code::cc_decoder::make(d_header_bits, 7, 2, { G1, G2 }, 0, 0,
                                        CC_TERMINATED, false);
    // pinv transposed to [rows][ntaps]: the taps' sums run side by side
    const size_t rows = pinv.size() / d_ntaps;
    d_pinv_t.resize(pinv.size());
    for (int i = 0; i < d_ntaps; i++)
        for (size_t r = 0; r < rows; r++)
            d_pinv_t[r * d_ntaps + i] = pinv[i * rows + r];
    int bits = 0;
    while ((1 << bits) < d_fft)
        bits++;
    for (int i = 0; i < d_fft; i++) {
        int r = 0;
        for (int b = 0; b < bits; b++)
            r |= ((i >> b) & 1) << (bits - 1 - b);
        d_rev.push_back(r);
        d_tw.push_back(cis(-2 * PI * i / d_fft));
    }
    // robust.py _tappinv: taps = (Fu^H Fu)^-1 Fu^H Y, Fu = the fourier rows of the used carriers
    const int U = static_cast<int>(d_used.size()), T = d_ntaps;
    std::vector<cd> nrm(size_t(T) * T, cd(0));
    auto fu = [&](int j, int d) { return d_fourier[size_t((d_used[j] + d_fft) % d_fft) * T + d]; };
    for (int a = 0; a < T; a++)
        for (int b = 0; b < T; b++)
            for (int j = 0; j < U; j++)
                nrm[size_t(a) * T + b] += std::conj(fu(j, a)) * fu(j, b);
    d_gram = nrm;
    invert(nrm, T);
    d_tapfit.assign(size_t(T) * U, cd(0));
    for (int d = 0; d < T; d++)
        for (int j = 0; j < U; j++)
            for (int b = 0; b < T; b++)
                d_tapfit[size_t(d) * U + j] += nrm[size_t(d) * T + b] * std::conj(fu(j, b));
    // each least-squares tap's noise gain: the header's (from the used carriers) and the
    // preamble's (diag (A^H A)^-1 = the squared norms of pinv's rows); robust.py _obs_filter
    d_tapnoise.assign(T, 0.0);
    d_pretapvar.assign(T, 0.0);
    for (int d = 0; d < T; d++) {
        for (int j = 0; j < U; j++)
            d_tapnoise[d] += std::norm(d_tapfit[size_t(d) * U + j]);
        for (size_t r = 0; r < rows; r++)
            d_pretapvar[d] += std::norm(pinv[size_t(d) * rows + r]);
    }
}

// robust.py _grid: FFT of `count` symbols from absolute sample `first`, CFO removed.
// The symbols are transformed side by side (layout [sample][symbol]), so each butterfly's
// inner loop runs over the symbols and vectorises.
void robust_demod::grid(const std::complex<float>* buf, int64_t first, int count,
                        std::vector<cd>& Y)
{
    const int sl = d_fft + d_cp;
    const double norm = 1.0 / (std::sqrt(double(d_fft)) * d_scale);
    std::vector<cd> r(d_fft);
    for (int i = 0; i < d_fft; i++)
        r[i] = cis(-2 * PI * d_cfo * double(i));
    std::vector<cd>& x = d_work;
    x.resize(size_t(count) * d_fft);
    for (int s = 0; s < count; s++) {
        const int64_t a = first + int64_t(s) * sl;
        const cd base = cis(-2 * PI * d_cfo * double(a));
        for (int i = 0; i < d_fft; i++)
            x[size_t(d_rev[i]) * count + s] = cd(buf[a + i]) * (base * r[i]);
    }
    // radix-2 decimation in time, bit-reversed input
    for (int len = 2; len <= d_fft; len <<= 1)
        for (int i = 0; i < d_fft; i += len)
            for (int j = 0; j < len / 2; j++) {
                const cd w = d_tw[size_t(j) * (d_fft / len)];
                cd* u = &x[size_t(i + j) * count];
                cd* v = &x[size_t(i + j + len / 2) * count];
                for (int s = 0; s < count; s++) {
                    const cd t = v[s] * w;
                    v[s] = u[s] - t;
                    u[s] += t;
                }
            }
    Y.resize(size_t(count) * d_fft);
    for (int s = 0; s < count; s++)
        for (int k = 0; k < d_fft; k++)
            Y[size_t(s) * d_fft + k] = x[size_t(k) * count + s] * norm;
}

// robust.py _track: grid fit of phase, residual CFO (and SRO) to obs [count][carriers].
// Coarse to fine: every d_stride-th grid point, then every point within d_stride - 1 of the
// coarse best (the fit's main lobe spans several coarse steps); d_stride 1: the full grid.
void robust_demod::track(const std::vector<cd>& obs, int count,
                         const std::vector<int>& carriers, const std::vector<double>& times,
                         bool fit_sro, std::vector<cd>& rot, double* sro)
{
    const int K = static_cast<int>(carriers.size());
    const std::vector<double> zero{ 0.0 };
    const std::vector<double>& sros = fit_sro ? d_sro_grid : zero;
    const int E = static_cast<int>(sros.size()), F = static_cast<int>(d_cfo_grid.size());
    const double dsro = E > 1 ? sros[1] - sros[0] : 0.0; // both grids are uniform
    const double df = F > 1 ? d_cfo_grid[1] - d_cfo_grid[0] : 0.0;
    const int cmax = std::max(std::abs(*std::min_element(carriers.begin(), carriers.end())),
                              std::abs(*std::max_element(carriers.begin(), carriers.end())));
    // the observations summed per carrier index, [2 cmax + 1][s] (symbols inner: the Horner
    // steps below run over all symbols and hypotheses side by side)
    const int W = 2 * cmax + 1;
    std::vector<double> ar(size_t(count) * W, 0.0), ai(size_t(count) * W, 0.0);
    for (int s = 0; s < count; s++)
        for (int k = 0; k < K; k++) {
            ar[size_t(cmax + carriers[k]) * count + s] += obs[size_t(s) * K + k].real();
            ai[size_t(cmax + carriers[k]) * count + s] += obs[size_t(s) * K + k].imag();
        }
    std::vector<cd> comb, pw(std::max(E, std::max(F, d_fft))), pwc(E);
    const size_t EC = size_t(E) * count;
    std::vector<double> wr(EC), wi(EC), unr(EC), uni(EC), accr(EC), acci(EC);
    // comb[i][s] = sum_k obs[s][k] w^{c_k} for SRO sros[e0 + i de], i < ne,
    // w = e^{2 pi i sro t_s / n}: a polynomial in w (Horner; the ne x count independent
    // recurrences in one vectorised loop, [i][s], not one short loop per symbol), times
    // w^{-cmax}
    int comb_e0 = 0; // the SRO index of comb's first row
    auto combine = [&](int e0, int de, int ne) {
        comb_e0 = e0;
        const size_t N = size_t(ne) * count;
        comb.assign(N, cd(0));
        const double s0 = sros[e0], ds = dsro * de;
        for (int s = 0; s < count; s++) {
            phasors(cis(2 * PI * s0 * times[s] / d_fft), cis(2 * PI * ds * times[s] / d_fft),
                    ne, pw.data());
            phasors(cis(-2 * PI * s0 * times[s] / d_fft * cmax),
                    cis(-2 * PI * ds * times[s] / d_fft * cmax), ne, pwc.data());
            for (int e = 0; e < ne; e++) {
                const size_t i = size_t(e) * count + s;
                wr[i] = pw[e].real();
                wi[i] = pw[e].imag();
                unr[i] = pwc[e].real();
                uni[i] = pwc[e].imag();
            }
        }
        for (int e = 0; e < ne; e++)
            for (int s = 0; s < count; s++) {
                accr[size_t(e) * count + s] = ar[size_t(2 * cmax) * count + s];
                acci[size_t(e) * count + s] = ai[size_t(2 * cmax) * count + s];
            }
        double* pr = accr.data();
        double* pi = acci.data();
        const double* xr = wr.data();
        const double* xi = wi.data();
        for (int j = 2 * cmax - 1; j >= 0; j--) {
            const double* a_r = &ar[size_t(j) * count];
            const double* a_i = &ai[size_t(j) * count];
            for (int e = 0; e < ne; e++) {
                const size_t o = size_t(e) * count;
                for (int s = 0; s < count; s++) {
                    const double r = pr[o + s] * xr[o + s] - pi[o + s] * xi[o + s] + a_r[s];
                    pi[o + s] = pr[o + s] * xi[o + s] + pi[o + s] * xr[o + s] + a_i[s];
                    pr[o + s] = r;
                }
            }
        }
        for (size_t i = 0; i < N; i++)
            comb[i] = cd(accr[i], acci[i]) * cd(unr[i], uni[i]);
    };
    // best over e = e0 + i de (i < ne; comb from combine(e0, de, ne)), f = f0 + j dfi (j < nf)
    // of |sum_s comb[i][s] e^{-2 pi i t_s cfo_f}|^2, vectorised over f
    std::vector<double> tr, ti, fr, fi;
    double best = -1;
    int be = 0, bf = 0;
    auto fit = [&](int e0, int de, int ne, int f0, int dfi, int nf) {
        tr.resize(size_t(nf) * count);
        ti.resize(size_t(nf) * count);
        for (int s = 0; s < count; s++) {
            phasors(cis(-2 * PI * times[s] * d_cfo_grid[f0]), cis(-2 * PI * times[s] * df * dfi),
                    nf, pw.data());
            for (int f = 0; f < nf; f++) {
                tr[size_t(s) * nf + f] = pw[f].real();
                ti[size_t(s) * nf + f] = pw[f].imag();
            }
        }
        fr.resize(nf);
        fi.resize(nf);
        best = -1;
        for (int e = 0; e < ne; e++) {
            std::fill(fr.begin(), fr.end(), 0.0);
            std::fill(fi.begin(), fi.end(), 0.0);
            for (int s = 0; s < count; s++) {
                const double cr = comb[size_t(e) * count + s].real();
                const double ci = comb[size_t(e) * count + s].imag();
                const double* r = &tr[size_t(s) * nf];
                const double* i = &ti[size_t(s) * nf];
                for (int f = 0; f < nf; f++) {
                    fr[f] += cr * r[f] - ci * i[f];
                    fi[f] += cr * i[f] + ci * r[f];
                }
            }
            for (int f = 0; f < nf; f++) {
                const double v = fr[f] * fr[f] + fi[f] * fi[f];
                if (v > best) {
                    best = v;
                    be = e0 + e * de;
                    bf = f0 + f * dfi;
                }
            }
        }
    };
    // coarse: every d_stride-th point; fine: the points within d_stride - 1 of the best
    const int st = d_stride, w = d_stride - 1;
    combine(0, st, (E - 1) / st + 1);
    fit(0, st, (E - 1) / st + 1, 0, st, (F - 1) / st + 1);
    if (w > 0) {
        const int e_lo = std::max(be - w, 0), e_hi = std::min(be + w, E - 1);
        const int f_lo = std::max(bf - w, 0), f_hi = std::min(bf + w, F - 1);
        combine(e_lo, 1, e_hi - e_lo + 1);
        fit(e_lo, 1, e_hi - e_lo + 1, f_lo, 1, f_hi - f_lo + 1);
    }
    const double eps = sros[be], dcfo = d_cfo_grid[bf];
    cd acc = 0;
    for (int s = 0; s < count; s++)
        acc += comb[size_t(be - comb_e0) * count + s] * cis(-2 * PI * dcfo * times[s]);
    const double phase = std::arg(acc);
    rot.resize(size_t(count) * d_fft);
    for (int s = 0; s < count; s++) {
        // e^{-i (phase + 2 pi dcfo t - 2 pi t kf eps / n)}, kf = 0..n/2-1, -n/2..-1
        const cd base = cis(-(phase + 2 * PI * dcfo * times[s]));
        const cd w = cis(2 * PI * times[s] * eps / d_fft);
        phasors(base, w, d_fft / 2, &rot[size_t(s) * d_fft]);
        // k = n-1 down to n/2: base conj(w)^(n-k)
        phasors(base * std::conj(w), std::conj(w), d_fft / 2, pw.data());
        for (int j = 0; j < d_fft / 2; j++)
            rot[size_t(s) * d_fft + d_fft - 1 - j] = pw[j];
    }
    if (sro)
        *sro = eps;
}

std::vector<uint8_t> robust_demod::header(const std::complex<float>* buf, int64_t len,
                                          int64_t t0, int cfo_bin)
{
    const int n = static_cast<int>(d_pre.size()), m = n / d_segl, sl = d_fft + d_cp;
    if (t0 + d_tap0 < 0 || t0 + n + int64_t(d_hs) * sl > len)
        return {};
    // _coarse_cfo: the CFO bank's bin, parabolic interpolation
    std::vector<cd> v(m);
    for (int i = 0; i < m; i++) {
        cd acc = 0;
        for (int k = 0; k < d_segl; k++)
            acc += cd(buf[t0 + i * d_segl + k]) * d_seg0[size_t(i) * d_segl + k];
        v[i] = acc;
    }
    auto spec = [&](int k) {
        k = ((k % (2 * m)) + 2 * m) % (2 * m);
        std::vector<cd> w(m);
        phasors(1.0, cis(-2 * PI * k / (2 * m)), m, w.data());
        cd acc = 0;
        for (int i = 0; i < m; i++)
            acc += v[i] * w[i];
        return std::norm(acc);
    };
    const double a = spec(cfo_bin - 1), b = spec(cfo_bin), c = spec(cfo_bin + 1);
    const double den = a - 2 * b + c;
    double kk = cfo_bin + (den < 0 ? 0.5 * (a - c) / den : 0.0);
    if (kk >= m)
        kk -= 2 * m;
    d_cfo = kk / (2.0 * m * d_segl);
    // fine CFO: the phase between the preamble's halves
    cd a1 = 0, a2 = 0;
    {
        std::vector<cd> ph(n);
        phasors(cis(-2 * PI * d_cfo * double(t0)), cis(-2 * PI * d_cfo), n, ph.data());
        for (int j = 0; j < n; j++)
            (j < n / 2 ? a1 : a2) += cd(buf[t0 + j]) * ph[j] * std::conj(d_pre[j]);
    }
    d_cfo += std::arg(a2 * std::conj(a1)) / (2 * PI * (n / 2));
    // channel taps: least squares on the preamble (pinv from numpy), noise from the residual
    const int last = d_tap0 + d_ntaps - 1, rows = n - d_ntaps + 1;
    std::vector<cd> obs(rows);
    {
        phasors(cis(-2 * PI * d_cfo * double(t0 + last)), cis(-2 * PI * d_cfo), rows,
                obs.data());
        for (int r = 0; r < rows; r++)
            obs[r] *= cd(buf[t0 + last + r]);
    }
    // h = pinv obs and the fit A h, each as independent sums (no long dependency chain)
    std::vector<cd> h(d_ntaps, cd(0));
    for (int r = 0; r < rows; r++) {
        const cd* p = &d_pinv_t[size_t(r) * d_ntaps];
        for (int i = 0; i < d_ntaps; i++)
            h[i] += p[i] * obs[r];
    }
    std::vector<cd> fit(rows, cd(0));
    for (int i = 0; i < d_ntaps; i++) {
        const cd hi = h[i];
        const cd* pre = &d_pre[d_ntaps - 1 - i];
        for (int r = 0; r < rows; r++)
            fit[r] += pre[r] * hi;
    }
    double res = 0;
    for (int r = 0; r < rows; r++)
        res += std::norm(obs[r] - fit[r]);
    d_noise_var = std::max(res / rows * rows / double(rows - d_ntaps), 1e-12);
    d_h = h;
    d_H.assign(d_fft, cd(0));
    for (int k = 0; k < d_fft; k++)
        for (int i = 0; i < d_ntaps; i++)
            d_H[k] += d_fourier[size_t(k) * d_ntaps + i] * h[i];
    d_t0 = t0;
    // header symbols, phase tracking on the pilots, soft bits, gr-fec's Viterbi
    const int64_t first = t0 + n + d_cp - d_backoff;
    std::vector<cd>& Y = d_Yh;
    grid(buf, first, d_hs, Y);
    d_header_t0 = t0;
    std::vector<double> times(d_hs);
    for (int s = 0; s < d_hs; s++)
        times[s] = double(first - t0) + s * sl + d_fft / 2.0 - n / 2.0;
    const int P = static_cast<int>(d_pilots.size()), D = static_cast<int>(d_data.size());
    std::vector<cd> po(size_t(d_hs) * P);
    for (int s = 0; s < d_hs; s++)
        for (int j = 0; j < P; j++) {
            const int k = (d_pilots[j] + d_fft) % d_fft;
            po[size_t(s) * P + j] =
                Y[size_t(s) * d_fft + k] * std::conj(d_H[k]) * (d_pol[s] * d_pv[j]);
        }
    std::vector<cd> rot;
    track(po, d_hs, d_pilots, times, false, rot, nullptr);
    std::vector<double> llr(2 * (d_header_bits + 6), 0.0);
    for (int s = 0; s < d_hs; s++)
        for (int d = 0; d < D; d++) {
            const int k = (d_data[d] + d_fft) % d_fft;
            const cd y = Y[size_t(s) * d_fft + k] * rot[size_t(s) * d_fft + k];
            llr[d_map[size_t(s) * D + d]] += (std::conj(d_H[k]) * y).real() / d_noise_var;
        }
    d_bits = decode(llr);
    return d_bits;
}

std::vector<std::complex<float>> robust_demod::payload(const std::complex<float>* buf,
                                                       int64_t len, int64_t t0, int n_sym,
                                                       const std::vector<int64_t>& pmap)
{
    // t0 may differ from header()'s when the buffer moved since: a common phase of Y H*,
    // which the phase fit absorbs
    d_t0 = t0;
    const int n = static_cast<int>(d_pre.size()), sl = d_fft + d_cp;
    const int D = static_cast<int>(d_data.size()), P = static_cast<int>(d_pilots.size());
    const int n_pay = (n_sym + D - 1) / D, total = d_hs + n_pay;
    const int64_t first = d_t0 + n + d_cp - d_backoff;
    if (d_t0 + n + int64_t(total) * sl > len || pmap.size() < size_t(n_sym))
        return {};
    std::vector<cd> Y;
    if (t0 == d_header_t0 && d_Yh.size() == size_t(d_hs) * d_fft) {
        // the buffer has not moved since header(): its symbols are the same, grid the rest
        grid(buf, first + int64_t(d_hs) * sl, n_pay, Y);
        Y.insert(Y.begin(), d_Yh.begin(), d_Yh.end());
    } else {
        grid(buf, first, total, Y);
    }
    std::vector<double> times(total);
    for (int s = 0; s < total; s++)
        times[s] = double(first - d_t0) + s * sl + d_fft / 2.0 - n / 2.0;
    // the known symbols: pilots everywhere, the re-encoded header
    std::vector<double> known(size_t(total) * d_fft, 0.0);
    const std::vector<uint8_t> coded = encode(d_bits);
    for (int s = 0; s < total; s++) {
        for (int j = 0; j < P; j++)
            known[size_t(s) * d_fft + (d_pilots[j] + d_fft) % d_fft] = d_pol[s] * d_pv[j];
        if (s < d_hs)
            for (int d = 0; d < D; d++)
                known[size_t(s) * d_fft + (d_data[d] + d_fft) % d_fft] =
                    1.0 - 2.0 * coded[d_map[size_t(s) * D + d]];
    }
    const int U = static_cast<int>(d_used.size());
    std::vector<cd> obs(size_t(total) * U);
    for (int s = 0; s < total; s++)
        for (int j = 0; j < U; j++) {
            const int k = (d_used[j] + d_fft) % d_fft;
            obs[size_t(s) * U + j] = Y[size_t(s) * d_fft + k] * std::conj(d_H[k]) *
                                     known[size_t(s) * d_fft + k];
        }
    std::vector<cd> rot;
    track(obs, total, d_used, times, true, rot, &d_sro);
    // channel tracking (robust.py _channel): a robust Wiener filter over the preamble's taps
    // and each header symbol's taps (least squares on its known carriers); the header
    // symbols leave their own observation out. The sinc correlations depend only on the
    // frame's geometry (built once); the products run as real arithmetic on split arrays
    // with the inner loop over symbols or carriers (vectorises: no reductions)
    const int T = d_ntaps, M = d_hs + 1, hs = d_hs, F = d_fft;
    const double nv_c = d_noise_var / (d_scale * d_scale);
    const int rows = n - T + 1;
    if (d_tobs.size() != size_t(M)) {
        d_tobs.assign(M, 0.0);
        for (int s = 0; s < hs; s++)
            d_tobs[s + 1] = times[s];
        d_corr.resize(size_t(M) * M);
        for (int a = 0; a < M; a++)
            for (int b = 0; b < M; b++)
                d_corr[size_t(a) * M + b] = sinc(2 * TRACK_DOPPLER * (d_tobs[a] - d_tobs[b]));
        d_gr.resize(size_t(T) * U);
        d_gi.resize(size_t(T) * U);
        for (size_t i = 0; i < d_gr.size(); i++) {
            d_gr[i] = d_tapfit[i].real();
            d_gi[i] = d_tapfit[i].imag();
        }
        d_fr.resize(size_t(T) * F);
        d_fi.resize(size_t(T) * F);
        for (int k = 0; k < F; k++)
            for (int d = 0; d < T; d++) {
                d_fr[size_t(d) * F + k] = d_fourier[size_t(k) * T + d].real();
                d_fi[size_t(d) * F + k] = d_fourier[size_t(k) * T + d].imag();
            }
        d_rpay.clear();
    }
    for (int s = hs + int(d_rpay.size() / M); s < total; s++)
        for (int a = 0; a < M; a++)
            d_rpay.push_back(sinc(2 * TRACK_DOPPLER * (times[s] - d_tobs[a])));
    // the header symbols' observations, [used][symbol], and their taps, [tap][symbol]
    std::vector<double>&okr = d_w1, &oki = d_w2, &thr = d_w3, &thi = d_w4;
    okr.resize(size_t(U) * hs);
    oki.resize(size_t(U) * hs);
    double power = 0;
    for (int s = 0; s < hs; s++)
        for (int j = 0; j < U; j++) {
            const size_t i = size_t(s) * F + (d_used[j] + F) % F;
            const cd yr = Y[i] * rot[i];
            power += std::norm(yr);
            okr[size_t(j) * hs + s] = yr.real() * known[i];
            oki[size_t(j) * hs + s] = yr.imag() * known[i];
        }
    // observed taps [obs][tap]: the preamble's, then each header symbol's
    thr.assign(size_t(M) * T, 0.0);
    thi.assign(size_t(M) * T, 0.0);
    for (int d = 0; d < T; d++) {
        thr[d] = d_h[d].real();
        thi[d] = d_h[d].imag();
    }
    {
        std::vector<double>&ar = d_w5, &ai = d_w6; // [tap][symbol]
        ar.assign(size_t(T) * hs, 0.0);
        ai.assign(size_t(T) * hs, 0.0);
        for (int d = 0; d < T; d++) {
            double* pr = &ar[size_t(d) * hs];
            double* pi = &ai[size_t(d) * hs];
            for (int j = 0; j < U; j++) {
                const double a = d_gr[size_t(d) * U + j], b = d_gi[size_t(d) * U + j];
                const double* xr = &okr[size_t(j) * hs];
                const double* xi = &oki[size_t(j) * hs];
                for (int s = 0; s < hs; s++) {
                    pr[s] += a * xr[s] - b * xi[s];
                    pi[s] += a * xi[s] + b * xr[s];
                }
            }
            for (int s = 0; s < hs; s++) {
                thr[size_t(s + 1) * T + d] = pr[s];
                thi[size_t(s + 1) * T + d] = pi[s];
            }
        }
    }
    power = std::max(power / (double(hs) * U) - nv_c, 1e-3 * nv_c);
    // the header symbols' LMMSE observations (robust.py _obs_filter): W obs = B ls, with ls
    // the least-squares taps above and B = (P G + nv_c I)^-1 P G (Fu^H obs = G ls: the
    // residual of the fit is orthogonal to the taps' carriers), P = the power per delay
    double ovar = 0;
    {
        std::vector<double> pk(T);
        double psum = 0;
        for (int d = 0; d < T; d++) {
            double m = 0;
            for (int s = 1; s <= hs; s++)
                m += thr[size_t(s) * T + d] * thr[size_t(s) * T + d] +
                     thi[size_t(s) * T + d] * thi[size_t(s) * T + d];
            m = m / hs - nv_c * d_tapnoise[d];
            pk[d] = std::max(std::max(m, std::norm(d_h[d]) - d_noise_var * d_pretapvar[d]),
                             0.0);
            psum += pk[d];
        }
        for (int d = 0; d < T; d++)
            pk[d] += 1e-6 * (psum + nv_c); // keeps B defined on a null channel
        std::vector<cd> Mx(size_t(T) * T), B(size_t(T) * T, cd(0));
        for (int a = 0; a < T; a++)
            for (int b = 0; b < T; b++)
                Mx[size_t(a) * T + b] = pk[a] * d_gram[size_t(a) * T + b] + (a == b ? nv_c : 0.0);
        invert(Mx, T);
        for (int a = 0; a < T; a++)
            for (int c2 = 0; c2 < T; c2++) {
                const cd m = Mx[size_t(a) * T + c2] * pk[c2];
                for (int b = 0; b < T; b++)
                    B[size_t(a) * T + b] += m * d_gram[size_t(c2) * T + b];
            }
        // the observation's error per used carrier: tr((P - B P) G) / U
        for (int d = 0; d < T; d++)
            for (int b = 0; b < T; b++) {
                const cd e = (d == b ? cd(pk[d]) : cd(0)) - B[size_t(d) * T + b] * pk[b];
                ovar += (e * d_gram[size_t(b) * T + d]).real();
            }
        ovar /= U;
        std::vector<cd> t(T);
        for (int s = 1; s <= hs; s++) {
            for (int d = 0; d < T; d++) {
                cd acc = 0;
                for (int b = 0; b < T; b++)
                    acc += B[size_t(d) * T + b] *
                           cd(thr[size_t(s) * T + b], thi[size_t(s) * T + b]);
                t[d] = acc;
            }
            for (int d = 0; d < T; d++) {
                thr[size_t(s) * T + d] = t[d].real();
                thi[size_t(s) * T + d] = t[d].imag();
            }
        }
    }
    std::vector<double>& K = d_K;
    K = d_corr;
    std::vector<double> nugget(M);
    for (int a = 0; a < M; a++) {
        const double var = (a == 0 ? d_noise_var * T / rows : ovar) / power;
        nugget[a] = std::max(var, TRACK_FLOOR);
        K[size_t(a) * M + a] += nugget[a];
    }
    invert_spd(K, M, d_w7);
    std::vector<double>&Ar = d_w5, &Ai = d_w6; // K^-1 th, [obs][tap]
    Ar.assign(size_t(M) * T, 0.0);
    Ai.assign(size_t(M) * T, 0.0);
    for (int a = 0; a < M; a++)
        for (int b = 0; b < M; b++) {
            const double kab = K[size_t(a) * M + b];
            const double* xr = &thr[size_t(b) * T];
            const double* xi = &thi[size_t(b) * T];
            double* pr = &Ar[size_t(a) * T];
            double* pi = &Ai[size_t(a) * T];
            for (int d = 0; d < T; d++) {
                pr[d] += kab * xr[d];
                pi[d] += kab * xi[d];
            }
        }
    // weights summing to one (ordinary kriging): b = K^-1 1, the channel's GLS mean
    std::vector<double> b(M, 0.0);
    double c = 0;
    for (int a = 0; a < M; a++) {
        for (int j = 0; j < M; j++)
            b[a] += K[size_t(a) * M + j];
        c += b[a];
    }
    std::vector<double> mr(T, 0.0), mi(T, 0.0);
    for (int a = 0; a < M; a++)
        for (int d = 0; d < T; d++) {
            mr[d] += b[a] * thr[size_t(a) * T + d];
            mi[d] += b[a] * thi[size_t(a) * T + d];
        }
    for (int d = 0; d < T; d++) {
        mr[d] /= c;
        mi[d] /= c;
    }
    // the tracked taps per symbol [symbol][tap], then H(t, f) [symbol][carrier]
    std::vector<double>&htr = d_w7, &hti = d_w8;
    htr.assign(size_t(total) * T, 0.0);
    hti.assign(size_t(total) * T, 0.0);
    // each symbol's estimation-error variance of H (robust.py _channel's evar): leave-one-out
    // 1 / q - nugget on the header, the kriging variance 1 - r K^-1 r + (1 - r b)^2 / c on
    // the payload
    std::vector<double> evar(total, 0.0);
    for (int s = 0; s < total; s++) {
        double* hr = &htr[size_t(s) * T];
        double* hi = &hti[size_t(s) * T];
        if (s < hs) { // leave-one-out (Dubrule): th_i - (Q th)_i / Q_ii, Q = K^-1 - b b^T / c
            const int i = s + 1;
            const double q = K[size_t(i) * M + i] - b[i] * b[i] / c;
            evar[s] = std::max(1 / q - nugget[i], 0.0) * power;
            for (int d = 0; d < T; d++) {
                hr[d] = thr[size_t(i) * T + d] - (Ar[size_t(i) * T + d] - b[i] * mr[d]) / q;
                hi[d] = thi[size_t(i) * T + d] - (Ai[size_t(i) * T + d] - b[i] * mi[d]) / q;
            }
        } else {
            const double* r = &d_rpay[size_t(s - hs) * M];
            double rb = 0;
            for (int a = 0; a < M; a++) {
                rb += r[a] * b[a];
                for (int d = 0; d < T; d++) {
                    hr[d] += r[a] * Ar[size_t(a) * T + d];
                    hi[d] += r[a] * Ai[size_t(a) * T + d];
                }
            }
            for (int d = 0; d < T; d++) {
                hr[d] += (1 - rb) * mr[d];
                hi[d] += (1 - rb) * mi[d];
            }
            double rkr = 0;
            for (int a = 0; a < M; a++) {
                double ka = 0;
                for (int j = 0; j < M; j++)
                    ka += K[size_t(a) * M + j] * r[j];
                rkr += r[a] * ka;
            }
            evar[s] = std::max(1 - rkr + (1 - rb) * (1 - rb) / c, 0.0) * power;
        }
    }
    std::vector<double>&Hr = d_w1, &Hi = d_w2;
    Hr.assign(size_t(total) * F, 0.0);
    Hi.assign(size_t(total) * F, 0.0);
    for (int s = 0; s < total; s++) {
        double* pr = &Hr[size_t(s) * F];
        double* pi = &Hi[size_t(s) * F];
        for (int d = 0; d < T; d++) {
            const double xr = htr[size_t(s) * T + d], xi = hti[size_t(s) * T + d];
            const double* fr = &d_fr[size_t(d) * F];
            const double* fi = &d_fi[size_t(d) * F];
            for (int k = 0; k < F; k++) {
                pr[k] += fr[k] * xr - fi[k] * xi;
                pi[k] += fr[k] * xi + fi[k] * xr;
            }
        }
    }
    // MMSE, then divided by its mean gain fitted on the known header symbols (see
    // phy/robust.py): an unbiased z = x + e, snr_db = 1 / E|e|^2. Only the used carriers
    // (data and pilots) are read after this.
    std::vector<cd> z(size_t(total) * d_fft, cd(0));
    double num = 0, den = 0;
    // the predicted error of the header's and the payload's slots (robust.py _payload_ratio)
    double model_hdr = 0, model_pay = 0;
    for (int s = 0; s < total; s++) {
        // each symbol divided by its own mean shrinkage over the data carriers (follows
        // the fade)
        double g = 0, m = 0;
        for (int d = 0; d < D; d++) {
            const size_t i = size_t(s) * F + (d_data[d] + F) % F;
            const double h2 = Hr[i] * Hr[i] + Hi[i] * Hi[i];
            g += h2 / (h2 + d_noise_var);
            m += h2 / ((h2 + d_noise_var) * (h2 + d_noise_var));
        }
        g /= D;
        m *= (nv_c + evar[s]) / (g * g);
        (s < hs ? model_hdr : model_pay) += m;
        for (int j = 0; j < U; j++) {
            const size_t i = size_t(s) * F + (d_used[j] + F) % F;
            const cd h(Hr[i], Hi[i]);
            z[i] = Y[i] * rot[i] * std::conj(h) / (std::norm(h) + d_noise_var) / g;
        }
    }
    for (int s = 0; s < d_hs; s++)
        for (int d = 0; d < D; d++) {
            const size_t i = size_t(s) * d_fft + (d_data[d] + d_fft) % d_fft;
            num += z[i].real() * known[i];
            den += known[i] * known[i];
        }
    const double gain = num > 0 ? num / den : 1.0;
    double hdr_err = 0, pil_err = 0;
    std::vector<cd> slots(size_t(n_pay) * D);
    for (int s = 0; s < total; s++) {
        for (int d = 0; d < D; d++) {
            const size_t i = size_t(s) * d_fft + (d_data[d] + d_fft) % d_fft;
            const cd zi = z[i] / gain;
            if (s < d_hs)
                hdr_err += std::norm(zi - known[i]);
            else
                slots[size_t(s - d_hs) * D + d] = zi;
        }
        if (s >= d_hs)
            for (int j = 0; j < P; j++) {
                const size_t i = size_t(s) * d_fft + (d_pilots[j] + d_fft) % d_fft;
                pil_err += std::norm(z[i] / gain - known[i]);
            }
    }
    const double hdr_mse = std::max(hdr_err / (double(d_hs) * D), 1e-12);
    d_header_snr_db = 10 * std::log10(1 / hdr_mse);
    const double ratio = (model_pay / n_pay) / std::max(model_hdr / hs, 1e-30);
    d_snr_db = 10 * std::log10(1 / std::max(hdr_mse * ratio, 1e-12));
    d_pilot_snr_db = 10 * std::log10(1 / std::max(pil_err / (double(n_pay) * P), 1e-12));
    std::vector<std::complex<float>> out(n_sym);
    for (int i = 0; i < n_sym; i++)
        out[i] = std::complex<float>(slots[pmap[i]]);
    return out;
}

} // namespace kbsemcom
} // namespace gr
