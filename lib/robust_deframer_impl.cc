/* gr-kbsemcom: robust_deframer, see include/gnuradio/kbsemcom/robust_deframer.h. Each step
 * follows python/kbsemcom/phy/ofdm_rx.py (robust_deframer with markers, ofdm_deframer) and
 * robust.py (Demodulator.demodulate, _demodulate_cpp); tests/test_robust_cpp.py compares
 * the PDUs and counts of both on the same samples. */
#include <gnuradio/io_signature.h>
#include <gnuradio/kbsemcom/robust_deframer.h>
#include <pmt/pmt.h>
#include <algorithm>
#include <cmath>
#include <deque>
#include <mutex>
#include <stdexcept>

namespace gr {
namespace kbsemcom {

namespace {
// binascii.crc_hqx(data, 0xFFFF): CRC-16-CCITT, polynomial 0x1021, MSB first
unsigned crc_hqx(const uint8_t* data, int n)
{
    unsigned crc = 0xFFFF;
    for (int i = 0; i < n; i++) {
        crc ^= unsigned(data[i]) << 8;
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xFFFF : (crc << 1) & 0xFFFF;
    }
    return crc;
}

// (whole seconds, fractional seconds) of an rx_time value, as ofdm_rx.tag_time
bool tag_time(const pmt::pmt_t& v, double* secs, double* frac)
{
    if (!pmt::is_tuple(v) || pmt::length(v) != 2)
        return false;
    const pmt::pmt_t a = pmt::tuple_ref(v, 0), b = pmt::tuple_ref(v, 1);
    if (pmt::is_uint64(a))
        *secs = double(pmt::to_uint64(a));
    else if (pmt::is_integer(a))
        *secs = double(pmt::to_long(a));
    else if (pmt::is_real(a))
        *secs = std::trunc(pmt::to_double(a));
    else
        return false;
    if (pmt::is_real(b))
        *frac = pmt::to_double(b);
    else if (pmt::is_integer(b))
        *frac = double(pmt::to_long(b));
    else if (pmt::is_uint64(b))
        *frac = double(pmt::to_uint64(b));
    else
        return false;
    return true;
}

const pmt::pmt_t RX_TIME = pmt::intern("rx_time");
const pmt::pmt_t SOF = pmt::intern("robust_sof");
const pmt::pmt_t OUT = pmt::intern("out");
// A history makes GNU Radio give this block's inputs, and the detector's and the source's
// output buffers, at least twice its length, so that a receiver that falls behind catches up
// in large calls: the detector's overlap-save FFTs then run on full blocks (without it, the
// detector's CPU per sample grew with the small calls). It never delays a call; work() skips
// the history's samples. The Python robust_deframer declares the same. 2^18 (buffers of 4 MB)
// rather than 2^15: with frames back to back the source's buffer, shared by the detector and
// this block, otherwise made the two threads take turns instead of running side by side
// (benchmarks/phy_throughput.py on an idle 2-core VM: 7.0-7.7 -> 12.9-14.0 MS/s wall clock).
constexpr int HISTORY = 1 << 18;
} // namespace

class robust_deframer_impl : public robust_deframer
{
    enum status { NEED, BAD, WRONG_LENGTH, OK };
    struct start {
        int64_t t;
        int bin;
    };
    struct header_fields {
        bool ok = false;
        int64_t packet_number = 0, seq = 0, payload_len = 0;
    };

    robust_demod d_demod;
    std::vector<uint8_t> d_white;
    map_fn d_map_fn;
    std::map<int, std::vector<int64_t>> d_maps;
    const int d_markers, d_search, d_header_end, d_sym_len, d_data, d_guard;
    const double d_samp_rate;
    const int64_t d_max_buffer;
    const int d_payload_len;
    const int d_keep, d_first_tap;

    std::vector<gr_complex> d_buf; // samples from absolute index d_base on
    int64_t d_base, d_scan = 0, d_last_end, d_last_hit = -(int64_t(1) << 40), d_floor = 0;
    std::deque<start> d_pending;
    int64_t d_held_key = 0;
    bool d_held_valid = false;
    header_fields d_held;
    // the last rx_time tag: absolute offset, whether its time parsed, and the time
    bool d_have_time = false, d_time_ok = false;
    int64_t d_time_off = 0;
    double d_secs = 0, d_frac = 0;

    mutable std::mutex d_lock;
    std::map<std::string, int64_t> d_counts;
    std::map<std::string, double> d_last;

    void count(const char* key, int64_t by = 1)
    {
        std::lock_guard<std::mutex> g(d_lock);
        d_counts[key] += by;
    }

    int n_pay(int n_sym) const { return (n_sym + d_data - 1) / d_data; }
    int64_t frame_len(int n_sym) const
    {
        return d_header_end + int64_t(n_pay(n_sym)) * d_sym_len + d_guard;
    }

    const std::vector<int64_t>& payload_map(int n_sym)
    {
        auto it = d_maps.find(n_sym);
        if (it != d_maps.end())
            return it->second;
        std::vector<int64_t> m = d_map_fn(n_sym);
        if (int64_t(m.size()) < n_sym)
            throw std::runtime_error("payload_map returned fewer slots than symbols");
        for (int64_t v : m)
            if (v < 0 || v >= int64_t(n_pay(n_sym)) * d_data)
                throw std::runtime_error("payload_map slot out of range");
        if (d_maps.size() > 64)
            d_maps.clear();
        return d_maps.emplace(n_sym, std::move(m)).first->second;
    }

    header_fields parse(const std::vector<uint8_t>& bits) const
    {
        if (bits.size() != d_white.size() || bits.size() != 64)
            throw std::runtime_error("the header decoder gave " + std::to_string(bits.size()) +
                                     " bits, expected 64");
        uint8_t raw[8] = { 0 };
        for (int i = 0; i < 64; i++)
            raw[i / 8] |= uint8_t(((bits[i] ^ d_white[i]) & 1) << (7 - i % 8));
        header_fields f;
        if (crc_hqx(raw, 6) != ((unsigned(raw[6]) << 8) | raw[7]))
            return f;
        f.ok = true;
        f.packet_number = (int64_t(raw[0]) << 8) | raw[1];
        f.seq = (int64_t(raw[2]) << 8) | raw[3];
        f.payload_len = (int64_t(raw[4]) << 8) | raw[5];
        return f;
    }

    pmt::pmt_t field_dict(const header_fields& f, double cfo, int64_t start) const
    {
        pmt::pmt_t d = pmt::make_dict();
        d = pmt::dict_add(d, pmt::intern("packet_number"), pmt::from_long(f.packet_number));
        d = pmt::dict_add(d, pmt::intern("seq"), pmt::from_long(f.seq));
        d = pmt::dict_add(d, pmt::intern("payload_len"), pmt::from_long(f.payload_len));
        d = pmt::dict_add(d, pmt::intern("cfo"), pmt::from_double(cfo));
        d = pmt::dict_add(d, pmt::intern("frame_start"), pmt::from_long(start));
        if (d_samp_rate > 0)
            d = pmt::dict_add(d, pmt::intern("cfo_hz"), pmt::from_double(cfo * d_samp_rate));
        return d;
    }

    // robust.Demodulator.demodulate from a detector's start (the C++ path), then the
    // deframer's publishing; returns NEED with *need = samples needed from the start
    status demodulate(const start& s, int64_t* need)
    {
        const int64_t rel = s.t - d_base;
        const int64_t len = static_cast<int64_t>(d_buf.size());
        const int64_t lo = rel - d_search + d_first_tap;
        if (rel + d_search + d_header_end > len) {
            *need = d_search + d_header_end;
            return NEED;
        }
        if (lo < 0)
            return BAD; // the frame starts before the buffer
        if (!d_held_valid || d_held_key != s.t) {
            const header_fields f = parse(d_demod.header(d_buf.data(), len, rel, s.bin));
            d_held = f;
            d_held_key = s.t;
            d_held_valid = true;
        }
        const header_fields f = d_held;
        if (!f.ok || f.payload_len == 0)
            return BAD; // CRC failed, or an empty payload
        const int n_sym = static_cast<int>(f.payload_len);
        const double cfo = d_demod.cfo();
        if (d_payload_len && n_sym != d_payload_len) {
            pmt::pmt_t d = field_dict(f, cfo, s.t);
            d = pmt::dict_add(
                d,
                pmt::intern("reason"),
                pmt::intern("the header states " + std::to_string(n_sym) +
                            " payload symbols, the receiver expects " +
                            std::to_string(d_payload_len) +
                            " (another codec or CBR at the transmitter, or a header that "
                            "passed its CRC by chance)"));
            d = pmt::dict_add(d, pmt::intern("lost"), pmt::PMT_T);
            d = pmt::dict_add(d, pmt::intern("stage"), pmt::intern("phy"));
            d_last_end = s.t + d_header_end;
            count("wrong_length");
            message_port_pub(OUT, pmt::cons(d, pmt::make_c32vector(0, gr_complex(0))));
            return WRONG_LENGTH;
        }
        const int64_t end = rel + d_header_end + int64_t(n_pay(n_sym)) * d_sym_len;
        if (end > len) {
            *need = end - rel;
            return NEED;
        }
        const std::vector<gr_complex> sym =
            d_demod.payload(d_buf.data(), len, rel, n_sym, payload_map(n_sym));
        pmt::pmt_t d = field_dict(f, cfo, s.t);
        d = pmt::dict_add(d, pmt::intern("snr_db"), pmt::from_double(d_demod.snr_db()));
        d = pmt::dict_add(
            d, pmt::intern("header_snr_db"), pmt::from_double(d_demod.header_snr_db()));
        d = pmt::dict_add(
            d, pmt::intern("payload_pilot_snr_db"), pmt::from_double(d_demod.pilot_snr_db()));
        d = pmt::dict_add(d, pmt::intern("sro_ppm"), pmt::from_double(d_demod.sro() * 1e6));
        d = pmt::dict_add(d, pmt::intern("noise_var"), pmt::from_double(d_demod.noise_var()));
        d_last_end = s.t + frame_len(n_sym) - d_guard;
        {
            std::lock_guard<std::mutex> g(d_lock);
            d_counts["frames"]++;
            d_last = { { "seq", double(f.seq) },
                       { "packet_number", double(f.packet_number) },
                       { "snr_db", d_demod.snr_db() },
                       { "cfo", cfo } };
        }
        message_port_pub(OUT, pmt::cons(d, pmt::init_c32vector(sym.size(), sym.data())));
        return OK;
    }

    void trigger(int64_t t, int bin)
    {
        if (t < d_floor)
            return; // a start the detector saw before a gap: its frame spans the gap
        if (t - d_last_hit > d_search) {
            d_pending.push_back({ t, bin });
            count("triggers");
        }
        d_last_hit = t;
    }

    void drain()
    {
        while (!d_pending.empty()) {
            const start s = d_pending.front();
            if (s.t < d_last_end) {
                d_pending.pop_front();
                count("inside_frame");
                continue;
            }
            int64_t need = 0;
            const status st = demodulate(s, &need);
            if (st == NEED) {
                if (need > d_max_buffer) {
                    d_pending.pop_front();
                    count("too_long");
                    continue;
                }
                return;
            }
            d_pending.pop_front();
            if (st == BAD)
                count("bad_header");
        }
    }

    // drop the samples no pending start, and no start found from keep_to on, can refer to
    void trim(int64_t keep_to)
    {
        int64_t keep_from = keep_to - d_keep;
        if (!d_pending.empty())
            keep_from = std::min(keep_from, d_pending.front().t - d_keep);
        const int64_t cut = std::min<int64_t>(std::max<int64_t>(0, keep_from - d_base),
                                              static_cast<int64_t>(d_buf.size()));
        if (cut > 0) {
            d_buf.erase(d_buf.begin(), d_buf.begin() + cut);
            d_base += cut;
        }
    }

    void take(const gr_complex* x, int lo, int hi)
    {
        d_buf.insert(d_buf.end(), x + lo, x + hi);
        const int64_t first = static_cast<int64_t>(nitems_read(0)) + lo;
        try {
            std::vector<tag_t> tags;
            get_tags_in_window(tags, 1, lo, hi, SOF);
            std::sort(tags.begin(), tags.end(), tag_t::offset_compare);
            for (const tag_t& tag : tags) {
                int bin = 0;
                if (pmt::is_tuple(tag.value) && pmt::length(tag.value) == 2)
                    bin = static_cast<int>(pmt::to_long(pmt::tuple_ref(tag.value, 1)));
                trigger(static_cast<int64_t>(tag.offset) - d_markers, bin);
            }
            // a marker comes ``markers`` samples after its start: keep that much
            d_scan = first + (hi - lo) - d_markers;
            drain();
        } catch (const std::exception& err) { // a bad frame must not stop the receiver
            d_logger->error(std::string("frame dropped after an error: ") + err.what());
            count("errors");
            if (!d_pending.empty())
                d_pending.pop_front();
        }
        trim(std::min<int64_t>(d_scan, d_base + static_cast<int64_t>(d_buf.size())));
    }

    // the buffer holds every sample up to gap (absolute); later ones are from later radio
    // time: cut frames are dropped, silence replaces the samples before the gap
    void resync(int64_t gap)
    {
        count("gap_dropped", static_cast<int64_t>(d_pending.size()));
        d_pending.clear();
        std::fill(d_buf.begin(), d_buf.end(), gr_complex(0));
        d_last_end = std::min(d_last_end, gap);
        d_scan = std::max(d_scan, gap);
        d_floor = gap;
        d_last_hit = -(int64_t(1) << 40);
    }

    // relative offsets in this call's input where samples were dropped before
    std::vector<int> gaps(int n)
    {
        std::vector<tag_t> tags;
        get_tags_in_window(tags, 0, 0, n, RX_TIME);
        std::sort(tags.begin(), tags.end(), tag_t::offset_compare);
        std::vector<int> out;
        const int64_t r = static_cast<int64_t>(nitems_read(0));
        for (const tag_t& tag : tags) {
            double secs = 0, frac = 0;
            const bool ok = tag_time(tag.value, &secs, &frac);
            const int64_t off = static_cast<int64_t>(tag.offset);
            const bool had = d_have_time, prev_ok = d_time_ok;
            const int64_t prev_off = d_time_off;
            const double prev_secs = d_secs, prev_frac = d_frac;
            d_have_time = true;
            d_time_ok = ok;
            d_time_off = off;
            d_secs = secs;
            d_frac = frac;
            if (!had)
                continue; // the stream's first time stamp
            if (ok && prev_ok && d_samp_rate > 0) {
                const double elapsed = (secs - prev_secs) + (frac - prev_frac);
                const int64_t lost =
                    static_cast<int64_t>(std::nearbyint(elapsed * d_samp_rate)) -
                    (off - prev_off);
                if (lost == 0)
                    continue; // the timeline goes on: nothing was dropped
                count("samples_lost", std::max<int64_t>(lost, 0));
            }
            count("gaps");
            out.push_back(static_cast<int>(off - r));
        }
        std::sort(out.begin(), out.end());
        out.erase(std::unique(out.begin(), out.end()), out.end());
        return out;
    }

public:
    robust_deframer_impl(const robust_demod& demod,
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
                         int first_tap)
        : gr::sync_block("robust_deframer",
                         gr::io_signature::makev(
                             2, 2, std::vector<int>{ sizeof(gr_complex), sizeof(int8_t) }),
                         gr::io_signature::make(0, 0, 0)),
          d_demod(demod),
          d_white(whitening),
          d_map_fn(std::move(payload_map)),
          d_markers(markers),
          d_search(search),
          d_header_end(header_end),
          d_sym_len(sym_len),
          d_data(data_carriers),
          d_guard(guard_len),
          d_samp_rate(samp_rate),
          d_max_buffer(max_buffer),
          d_payload_len(payload_len),
          d_keep(search - first_tap + 8),
          d_first_tap(first_tap)
    {
        if (whitening.size() != 64)
            throw std::invalid_argument("robust_deframer: whitening must hold 64 bits");
        if (markers < 0 || search < 0 || header_end <= 0 || sym_len <= 0 ||
            data_carriers <= 0 || guard_len < 0 || max_buffer <= 0 || payload_len < 0)
            throw std::invalid_argument("robust_deframer: a size parameter is out of range");
        if (!d_map_fn)
            throw std::invalid_argument("robust_deframer: payload_map is required");
        // zeros before the first sample, so a frame at the very start can still be timed
        d_buf.assign(d_keep, gr_complex(0));
        d_base = -d_keep;
        d_last_end = -d_keep;
        for (const char* k : { "triggers", "frames", "bad_header", "inside_frame",
                               "too_long", "errors", "wrong_length", "gaps",
                               "samples_lost", "gap_dropped" })
            d_counts[k] = 0;
        message_port_register_out(OUT);
        set_tag_propagation_policy(TPP_DONT);
        set_history(HISTORY + 1);
    }

    std::map<std::string, int64_t> counts() const override
    {
        std::lock_guard<std::mutex> g(d_lock);
        return d_counts;
    }
    std::map<std::string, double> last() const override
    {
        std::lock_guard<std::mutex> g(d_lock);
        return d_last;
    }
    int markers() const override { return d_markers; }

    int work(int noutput_items,
             gr_vector_const_void_star& input_items,
             gr_vector_void_star&) override
    {
        // the history's samples are not new (HISTORY); input 1's markers come from tags
        const gr_complex* x = static_cast<const gr_complex*>(input_items[0]) + HISTORY;
        const int n = noutput_items;
        int pos = 0;
        std::vector<int> cuts = gaps(n);
        cuts.push_back(n);
        for (int gap : cuts) {
            if (gap > pos)
                take(x, pos, gap);
            if (gap < n)
                resync(static_cast<int64_t>(nitems_read(0)) + gap);
            pos = gap;
        }
        return n;
    }
};

robust_deframer::sptr robust_deframer::make(const robust_demod& demod,
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
                                            int first_tap)
{
    return gnuradio::make_block_sptr<robust_deframer_impl>(demod,
                                                           whitening,
                                                           std::move(payload_map),
                                                           markers,
                                                           search,
                                                           header_end,
                                                           sym_len,
                                                           data_carriers,
                                                           guard_len,
                                                           samp_rate,
                                                           max_buffer,
                                                           payload_len,
                                                           first_tap);
}

} // namespace kbsemcom
} // namespace gr
