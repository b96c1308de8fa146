"""Live display: a Qt view of the result stream (running numbers and the latest image pairs).

Three parts, so that each can be tested on its own:

- ``LiveStats``: plain Python, the running numbers (semantic accuracy with lost images counted
  as wrong, as ``core.results.summarize`` defines it; last SNR estimate; images per second).
- ``LiveDisplayWidget``: the QWidget (no GNU Radio in it). ``submit(view)`` may be called from
  any thread; a queued Qt signal hands the view to the GUI thread, which only updates widgets.
- ``live_display``: the GNU Radio block. Its message handler (GNU Radio's thread) parses the
  PDU, updates the numbers, loads and scales the two thumbnails, then submits the view.
"""
import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import pmt
from gnuradio import gr
from PyQt5 import QtCore, QtGui, QtWidgets, sip

from ..core import datasets
from ..core.errors import UserError
from ..core.results import make_record
from ..pdus import parse_pdu

RATE_WINDOW_S = 5.0     # images/s counts the arrivals of the last 5 s (at least the last two)
THUMB_CACHE = 256       # decoded thumbnails kept per block (KB images are retrieved again)

COLOURS = {  # verdict -> (frame and text, tile background)
    "correct": ("#2e7d32", "#e8f5e9"),
    "wrong": ("#c62828", "#ffebee"),
    "lost": ("#757575", "#eeeeee"),
    "empty": ("#d0d0d0", "#fafafa"),
}
LOST_TILE = "#9e9e9e"


# --- the numbers ----------------------------------------------------------------------------

class LiveStats:
    """Running counts of a stream of result records; thread-safe.

    ``add(record)`` takes a record as ``core.results.make_record`` builds it and returns a
    snapshot dict: n, n_correct, n_lost, accuracy (n_correct / n, lost counts as wrong; 0.0
    before the first record), last_snr_db (the last record's ``snr_db`` that was not None),
    images_per_second ((k - 1) / (t_k - t_1) over the k arrivals of the last ``window_s``
    seconds, always at least the last two; None before two arrivals), n_scored (records with
    an open-set decision) and n_no_match (those judged to have no match in the KB).
    """

    def __init__(self, window_s=RATE_WINDOW_S, clock=time.monotonic):
        self.window_s = float(window_s)
        self.clock = clock
        self._lock = threading.Lock()
        self._times = collections.deque()
        self.n = self.n_correct = self.n_lost = self.n_scored = self.n_no_match = 0
        self.last_snr_db = None

    def add(self, record):
        now = self.clock()
        snr = record.get("snr_db")
        snr = float(snr) if snr is not None else None  # a bad value raises before counting
        with self._lock:
            self.n += 1
            self.n_lost += bool(record.get("lost"))
            self.n_correct += bool(record.get("correct")) and not record.get("lost")
            self.n_scored += record.get("no_match") is not None
            self.n_no_match += bool(record.get("no_match"))
            if snr is not None:
                self.last_snr_db = snr
            self._times.append(now)
            while len(self._times) > 2 and self._times[0] < now - self.window_s:
                self._times.popleft()
            return self._snapshot()

    def snapshot(self):
        with self._lock:
            return self._snapshot()

    def _snapshot(self):
        span = self._times[-1] - self._times[0] if len(self._times) >= 2 else 0.0
        return {"n": self.n, "n_correct": self.n_correct, "n_lost": self.n_lost,
                "accuracy": self.n_correct / self.n if self.n else 0.0,
                "last_snr_db": self.last_snr_db, "n_scored": self.n_scored,
                "n_no_match": self.n_no_match,
                "images_per_second": (len(self._times) - 1) / span if span > 0 else None}


def format_stats(stats):
    """The numbers as the display and the log write them: dict of str."""
    snr, rate = stats["last_snr_db"], stats["images_per_second"]
    return {"images": str(stats["n"]),
            "accuracy": f"{100 * stats['accuracy']:.1f}%" if stats["n"] else "-",
            "lost": str(stats["n_lost"]),
            "snr": f"{snr:.1f} dB" if snr is not None else "n/a",
            "rate": f"{rate:.1f} img/s" if rate is not None else "n/a",
            "no_match": f"{stats['n_no_match']} of {stats['n_scored']}"
            if stats.get("n_scored") else "n/a"}


def short_reason(reason, limit=48):
    """The first line of a loss reason, whitespace collapsed, cut to ``limit`` characters."""
    lines = str(reason or "").strip().splitlines()
    text = " ".join(lines[0].split()) if lines else "unknown"
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


# --- thumbnails (built in the message handler's thread: QImage, never QPixmap) --------------

def thumbnail(source, size, load=datasets.load_source):
    """A QImage of the image behind ``source`` that fits in size x size pixels, or None when
    there is no source or it cannot be loaded. Small images are scaled up with nearest
    neighbour (crisp pixels), large ones down with Lanczos."""
    if not source:
        return None
    try:
        from PIL import Image
        img = load(source).convert("RGB")
        w, h = img.size
        scale = size / max(w, h)
        new = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = img.resize(new, Image.NEAREST if scale >= 2 else Image.LANCZOS)
        data = img.tobytes()
        return QtGui.QImage(data, new[0], new[1], 3 * new[0],
                            QtGui.QImage.Format_RGB888).copy()  # copy: own the pixels
    except Exception:  # noqa: BLE001 - a missing picture shows a placeholder, never raises
        return None


@dataclass
class PairView:
    """One update for the widget: a result (or lost record) and the numbers after it."""
    verdict: str                      # 'correct', 'wrong' or 'lost'
    class_name: str
    retrieved_class: str = ""
    reason: str = ""                  # short loss reason (lost records)
    sent: Optional[QtGui.QImage] = None
    retrieved: Optional[QtGui.QImage] = None
    stats: dict = field(default_factory=dict)
    details: str = ""                 # tooltip: ids, stage, SNR
    link: str = ""                    # channel, CBR, symbols of the latest record


# --- the widget (Qt only) -------------------------------------------------------------------

class _PairCard(QtWidgets.QFrame):
    """sent | retrieved, framed in the verdict's colour, class names below."""

    def __init__(self, thumb, parent=None):
        super().__init__(parent)
        self.setObjectName("pairCard")
        self.thumb = thumb
        self.verdict = "empty"
        self.header = QtWidgets.QLabel()
        self.header.setObjectName("cardHeader")
        self.sent = self._tile()
        self.retrieved = self._tile()
        self.sent_caption = self._caption()
        self.retrieved_caption = self._caption()
        self.retrieved_caption.setObjectName("retrievedCaption")
        arrow = QtWidgets.QLabel("\u2192")
        arrow.setObjectName("arrow")
        arrow.setAlignment(QtCore.Qt.AlignCenter)
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(8, 5, 8, 6)
        grid.setHorizontalSpacing(4)
        grid.setVerticalSpacing(3)
        grid.addWidget(self.header, 0, 0, 1, 3)
        grid.addWidget(self.sent, 1, 0)
        grid.addWidget(arrow, 1, 1)
        grid.addWidget(self.retrieved, 1, 2)
        grid.addWidget(self.sent_caption, 2, 0)
        grid.addWidget(self.retrieved_caption, 2, 2)
        self.setSizePolicy(QtWidgets.QSizePolicy.Fixed, QtWidgets.QSizePolicy.Fixed)
        self.clear()

    def _tile(self):
        tile = QtWidgets.QLabel()
        tile.setFixedSize(self.thumb, self.thumb)
        tile.setAlignment(QtCore.Qt.AlignCenter)
        tile.setWordWrap(True)
        return tile

    def _caption(self):
        cap = QtWidgets.QLabel()
        cap.setObjectName("caption")
        cap.setFixedWidth(self.thumb)
        cap.setAlignment(QtCore.Qt.AlignCenter)
        return cap

    def _style(self, verdict):
        frame, background = COLOURS[verdict]
        style = "dashed" if verdict == "empty" else "solid"
        caption_pt = 10 if self.thumb >= 96 else 8
        self.setStyleSheet(
            f"QFrame#pairCard {{ border: 3px {style} {frame}; border-radius: 6px;"
            f" background: {background}; }}"
            f" QLabel#cardHeader {{ color: {frame}; font-weight: bold; }}"
            f" QLabel#caption {{ color: #212121; font-size: {caption_pt}pt; }}"
            f" QLabel#retrievedCaption {{ color: {frame}; font-weight: bold;"
            f" font-size: {caption_pt}pt; }}"
            f" QLabel#arrow {{ color: {frame if verdict == 'empty' else '#616161'};"
            " font-size: 14pt; }")

    def colour(self):
        """The frame's colour (#rrggbb) for the current verdict."""
        return COLOURS[self.verdict][0]

    def clear(self):
        self.verdict = "empty"
        self._style("empty")
        self.header.setText(" ")
        for tile in (self.sent, self.retrieved):
            tile.clear()
            tile.setStyleSheet("background: #f0f0f0; border-radius: 3px;")
        self.sent_caption.setText(" ")
        self.retrieved_caption.setText(" ")
        self.setToolTip("")

    def show_pair(self, number, view, pixmaps):
        self.verdict = view.verdict
        self._style(view.verdict)
        mark = {"correct": "\u2713 correct", "wrong": "\u2717 wrong", "lost": "lost"}
        self.header.setText(f"#{number}  {mark[view.verdict]}")
        self._picture(self.sent, pixmaps[0])
        self._set_caption(self.sent_caption, view.class_name)
        if view.verdict == "lost":
            self.retrieved.clear()
            self.retrieved.setText(f"lost: {view.reason}")
            self.retrieved.setStyleSheet(
                f"background: {LOST_TILE}; color: white; border-radius: 3px;"
                f" font-size: {8 if self.thumb >= 96 else 7}pt; font-weight: bold;"
                " padding: 3px;")
            self._set_caption(self.retrieved_caption, "")
        else:
            self._picture(self.retrieved, pixmaps[1])
            self._set_caption(self.retrieved_caption, view.retrieved_class)
        self.setToolTip(view.details)

    @staticmethod
    def _picture(tile, pixmap):
        if pixmap is None:
            tile.clear()
            tile.setText("no image")
            tile.setStyleSheet("background: #f5f5f5; color: #9e9e9e; border: 1px dashed #bdbdbd;"
                               " border-radius: 3px; font-size: 8pt;")
        else:
            tile.setStyleSheet("background: #000000;")
            tile.setPixmap(pixmap)

    def _set_caption(self, label, text):
        text = text or " "
        label.ensurePolished()  # measure with the style sheet's font
        label.setText(label.fontMetrics().elidedText(text, QtCore.Qt.ElideRight, self.thumb))
        label.setToolTip(text)


class LiveDisplayWidget(QtWidgets.QWidget):
    """Title, a row of numbers, and a grid of the latest sent | retrieved pairs (newest first).

    ``submit(view)`` is safe from any thread: a queued signal delivers the ``PairView`` to the
    GUI thread, where ``on_applied(number, view)`` is called after the widgets show it (number
    = 1, 2, ... in the order applied). An error while applying goes to ``on_error(message)``;
    it never escapes into Qt (PyQt aborts the process on an exception in a slot).
    """

    NUMBERS = (("images", "Images"), ("accuracy", "Accuracy"), ("lost", "Lost"),
               ("snr", "Last SNR"), ("rate", "Rate"), ("no_match", "No match"))
    _incoming = QtCore.pyqtSignal(object)

    def __init__(self, title="", history=8, on_applied=None, on_error=None, parent=None):
        super().__init__(parent)
        self.setObjectName("liveDisplay")
        self.setAttribute(QtCore.Qt.WA_StyledBackground, True)
        self.history = int(history)
        self.thumb = 96 if self.history <= 16 else 64
        self.on_applied = on_applied
        self.on_error = on_error
        self._applied = 0
        self._fitted = False
        self._pairs = collections.deque(maxlen=self.history)  # (number, view, pixmaps)
        self.setStyleSheet(
            "QWidget#liveDisplay { background: #ffffff; }"
            " QLabel { color: #212121; }"
            " QLabel#title { font-size: 14pt; font-weight: bold; }"
            " QLabel#link { color: #616161; }"
            " QFrame#numberBox { background: #f5f5f5; border: 1px solid #e0e0e0;"
            " border-radius: 5px; }"
            " QLabel#numberCaption { color: #757575; font-size: 8pt; }"
            " QLabel#numberValue { font-size: 15pt; font-weight: bold; }")

        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(10, 8, 10, 10)
        outer.setSpacing(8)
        top = QtWidgets.QHBoxLayout()
        self.title_label = QtWidgets.QLabel(title)
        self.title_label.setObjectName("title")
        self.link_label = QtWidgets.QLabel("")
        self.link_label.setObjectName("link")
        top.addWidget(self.title_label)
        top.addStretch(1)
        top.addWidget(self.link_label, 0, QtCore.Qt.AlignBottom)
        outer.addLayout(top)

        row = QtWidgets.QHBoxLayout()
        row.setSpacing(8)
        self.values = {}
        for key, caption in self.NUMBERS:
            box = QtWidgets.QFrame()
            box.setObjectName("numberBox")
            lay = QtWidgets.QVBoxLayout(box)
            lay.setContentsMargins(10, 4, 10, 5)
            lay.setSpacing(0)
            cap = QtWidgets.QLabel(caption.upper())
            cap.setObjectName("numberCaption")
            value = QtWidgets.QLabel("-")
            value.setObjectName("numberValue")
            lay.addWidget(cap)
            lay.addWidget(value)
            row.addWidget(box, 1)
            self.values[key] = value
        outer.addLayout(row)

        grid = QtWidgets.QGridLayout()
        grid.setSpacing(8)
        cols = min(self.history, 4 if self.history <= 16 else 8)
        self.cards = []
        for i in range(self.history):
            card = _PairCard(self.thumb)
            grid.addWidget(card, i // cols, i % cols, QtCore.Qt.AlignLeft | QtCore.Qt.AlignTop)
            self.cards.append(card)
        outer.addLayout(grid)
        outer.addStretch(1)
        self._incoming.connect(self._apply, QtCore.Qt.QueuedConnection)

    def showEvent(self, event):  # noqa: N802 - Qt's name
        super().showEvent(event)
        if not self._fitted:
            self._fitted = True
            QtCore.QTimer.singleShot(0, self._fit_window)

    def _fit_window(self):
        """A GNU Radio Qt window opens at its scroll area's small default size: grow it once
        (never shrink it, never beyond the screen) so that the flowgraph's widgets fit."""
        area = self.parentWidget()
        while area is not None and not isinstance(area, QtWidgets.QScrollArea):
            area = area.parentWidget()
        if area is None or area.widget() is None:
            return
        win = self.window()
        chrome = win.size() - area.viewport().size()
        need = area.widget().sizeHint() + chrome
        screen = QtWidgets.QApplication.desktop().availableGeometry(win)
        win.resize(max(win.width(), min(need.width(), screen.width())),
                   max(win.height(), min(need.height(), screen.height())))

    def set_title(self, title):
        self.title_label.setText(title)

    def submit(self, view):
        """Queue a PairView for the GUI thread (callable from any thread)."""
        self._incoming.emit(view)

    def applied(self):
        """How many views the GUI thread has applied."""
        return self._applied

    def numbers(self):
        """The numbers row as shown: {'images', 'accuracy', 'lost', 'snr', 'rate', 'no_match'}
        -> text."""
        return {key: label.text() for key, label in self.values.items()}

    def _apply(self, view):
        try:
            self._applied += 1
            pixmaps = tuple(QtGui.QPixmap.fromImage(img) if img is not None else None
                            for img in (view.sent, view.retrieved))
            self._pairs.appendleft((self._applied, view, pixmaps))
            for card, pair in zip(self.cards, self._pairs):
                card.show_pair(*pair)
            for key, text in format_stats(view.stats).items():
                self.values[key].setText(text)
            if view.link:
                self.link_label.setText(view.link)
            if self.on_applied:
                self.on_applied(self._applied, view)
        except Exception as err:  # noqa: BLE001 - never into Qt's event loop
            if self.on_error:
                try:
                    self.on_error(f"display update failed: {err!r}")
                except Exception:  # noqa: BLE001
                    pass


# --- the block ------------------------------------------------------------------------------

class live_display(gr.basic_block):
    """Live view of the semantic link in a QT GUI window: running numbers and the latest
    sent / retrieved image pairs.

    Input:
      in: the result PDUs that go to Result Sink (from KB Lookup, or lost records).
      Any other message is logged and dropped.

    Display:
      Numbers: images shown, semantic accuracy (correct / all, a lost image counts as
      wrong), lost images, last SNR estimate (dB), images per second over the last 5 s,
      and "No match": images a calibrated KB Lookup judged to have no match in the KB, of
      those it scored ('n/a' without an open-set calibration).
      Pairs: the latest images, newest first, each as sent | retrieved with its class
      name, framed green when the retrieved class is right and red when it is wrong;
      a lost image shows a grey "lost: <reason>" tile instead of the retrieved one; a
      retrieval judged to have no match has "(no match)" after its class.

    Parameters:
      Title: shown above the numbers and in the log lines.
      History: how many pairs to show (1 to 64).
      Log each image: log one line per image at info level (kbsemcom.live_display) once
      the window shows it: live_display '<title>' #<n>: <sent> -> <retrieved> <verdict> | ...

    From Python: qwidget() (the widget's address, as GNU Radio's Qt sinks give it),
    widget() (the QWidget), updates() (images the window has shown), stats() (n,
    n_correct, n_lost, accuracy, last_snr_db, images_per_second, n_scored, n_no_match).
    """

    def __init__(self, title="Semantic link", history=8, log_each=True, parent=None):
        gr.basic_block.__init__(self, name="live_display", in_sig=None, out_sig=None)
        history = int(history)
        if not 1 <= history <= 64:
            raise ValueError(f"live_display: history must be 1..64, not {history}")
        if QtWidgets.QApplication.instance() is None:
            raise UserError("live_display needs a QT GUI flowgraph (generate_options: qt_gui): "
                            "no QApplication is running")
        self.title = str(title)
        self.history = history
        self.log_each = bool(log_each)
        self.log = gr.logger("kbsemcom.live_display")
        self._stats = LiveStats()
        self._thumbs = collections.OrderedDict()
        self._lock = threading.Lock()
        self._updates = 0
        self._gone_logged = False
        self._widget = LiveDisplayWidget(self.title, history, self._shown, self._error, parent)
        self._thumb_size = self._widget.thumb
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self._handle)

    # -- GNU Radio's thread
    def _handle(self, msg):
        try:
            try:
                meta, _ = parse_pdu(msg)
            except ValueError as err:
                self.log.error(f"dropping a message that is not a PDU: {err}")
                return
            if sip.isdeleted(self._widget):  # the window was closed: nothing to draw on
                if not self._gone_logged:
                    self.log.warn("the display widget is gone; results are no longer shown")
                    self._gone_logged = True
                return
            rec = make_record(meta)
            stats = self._stats.add(rec)
            self._widget.submit(self._view(rec, stats))
        except Exception as err:  # noqa: BLE001 - a display must never stop the flowgraph
            self.log.error(f"dropping a result that could not be shown: {err!r}")

    def _view(self, rec, stats):
        lost = rec["lost"]
        verdict = "lost" if lost else ("correct" if rec["correct"] else "wrong")
        sent_class = _class_text(rec.get("class_name"), rec.get("label"))
        got_class = "" if lost else _class_text(rec.get("retrieved_class"),
                                                rec.get("retrieved_label"))
        details = [f"seq {rec.get('seq')}  sent {rec.get('image_id')} ({sent_class})"]
        if lost:
            details.append(f"lost at {rec.get('stage') or '?'}: {rec.get('reason') or '?'}")
        else:
            details.append(f"retrieved {rec.get('retrieved_id')} ({got_class})")
        if rec.get("no_match") is not None:
            got_class += " (no match)" if rec["no_match"] else ""
            details.append(f"match score {rec['match_score']:.2f}"
                           + ("  no match in the KB" if rec["no_match"] else ""))
        if rec.get("snr_db") is not None:
            details.append(f"SNR {float(rec['snr_db']):.1f} dB  {rec.get('channel') or ''}")
        return PairView(verdict=verdict, class_name=sent_class, retrieved_class=got_class,
                        reason=short_reason(rec.get("reason"), 48 if self._thumb_size >= 96
                                            else 24) if lost else "",
                        sent=self._thumbnail(rec.get("path")),
                        retrieved=None if lost else self._thumbnail(rec.get("retrieved_path")),
                        stats=stats, details="\n".join(details), link=link_text(rec))

    def _thumbnail(self, source):
        key = str(source) if source else ""
        if key in self._thumbs:
            self._thumbs.move_to_end(key)
            return self._thumbs[key]
        img = thumbnail(source, self._thumb_size)
        if img is None:  # not cached: a file that appears later is shown then
            return None
        self._thumbs[key] = img
        if len(self._thumbs) > THUMB_CACHE:
            self._thumbs.popitem(last=False)
        return img

    # -- the GUI thread
    def _shown(self, number, view):
        with self._lock:
            self._updates = number
        if self.log_each:
            self.log.info(log_line(self.title, number, view))

    def _error(self, message):
        self.log.error(message)

    # -- Python API
    def qwidget(self):
        """The widget's address, for ``sip.wrapinstance(addr, Qt.QWidget)`` (as the stock
        Qt sinks' ``qwidget()``); ``widget()`` gives the Python object."""
        return sip.unwrapinstance(self._widget)

    def widget(self):
        return self._widget

    def updates(self):
        """How many results the window has shown (updates applied in the GUI thread)."""
        with self._lock:
            return self._updates

    def stats(self):
        """Running numbers over the results received so far (see LiveStats)."""
        return self._stats.snapshot()


def link_text(rec):
    """'awgn  |  CBR 1/48  |  64 symbols' from a record's fields (those that are known)."""
    parts = [str(rec["channel"]) if rec.get("channel") else "",
             f"CBR {rec['cbr']}" if rec.get("cbr") else "",
             f"{rec['n_symbols']} symbols" if rec.get("n_symbols") else ""]
    return "  |  ".join(p for p in parts if p)


def _class_text(name, label):
    if name:
        return str(name)
    return f"class {label}" if label is not None else "?"


def log_line(title, number, view):
    """``live_display '<title>' #<n>: <sent> -> <retrieved> <verdict> | <numbers>``."""
    s = format_stats(view.stats)
    if view.verdict == "lost":
        what = f"{view.class_name} -> lost ({view.reason})"
    else:
        what = f"{view.class_name} -> {view.retrieved_class} {view.verdict}"
    scored = f", no match {s['no_match']}" if view.stats.get("n_scored") else ""
    return (f"live_display '{title}' #{number}: {what} | accuracy {s['accuracy']} of "
            f"{s['images']}, {s['lost']} lost, snr {s['snr']}, {s['rate']}{scored}")
