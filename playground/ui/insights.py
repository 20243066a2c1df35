"""Wires the insight views (odds and branching, attention, sample timeline, training health,
temperature sweep, earlier runs) to the session. Views stay passive; this only connects them."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, QTimer, Slot

from playground.ui.session import NO_MODEL
from playground.ui.sweep_view import TEMPERATURES


class Insights(QObject):
    def __init__(self, window):
        super().__init__(window)
        self.w = window
        s = window.session
        self._run_label = ""
        self._last_loss = None
        window.generation.odds.branchRequested.connect(self.branch)
        window.generation.sweep.clicked.connect(self.start_sweep)
        s.sweepToken.connect(self._sweep_token)
        s.sweepEnded.connect(self._sweep_ended)
        window.attention.refreshRequested.connect(self.show_attention)
        s.attentionReady.connect(self._attention_ready)
        s.evaluated.connect(self._evaluated)
        window.samples.stepSelected.connect(window.plot.mark_step)
        window.settings.changed.connect(self._preview_schedule)
        s.trainingStarted.connect(self._started)
        s.stepped.connect(self._stepped)
        s.trainingEnded.connect(self._ended)
        self.health_timer = QTimer(self, interval=300)
        self.health_timer.timeout.connect(self._refresh_health)
        self._preview_schedule()

    # -- runs and health ----------------------------------------------------------------
    def run_label(self) -> str:
        st = self.w.settings
        return (f"{st.value('layers')}x{st.value('width')}, {st.value('heads')} heads, "
                f"block {st.value('block')}, lr {st.lr.value():g}")

    def archive(self) -> None:
        """Keep the plot's current run as a faint curve (a new model is about to replace it)."""
        plot = self.w.plot
        if plot.raw.n:
            loss = "" if self._last_loss is None else f" -> {self._last_loss:.3f}"
            plot.archive_run(f"{self._run_label}{loss}")
        else:
            plot.clear()

    @Slot(object)
    def _started(self, ev) -> None:
        plot = self.w.plot
        if ev.first_step == 0:  # a fresh model: the previous run stays on the plot, faint
            self.archive()
            self._run_label = self.run_label()
        else:
            plot.continue_run()
        self.w.health.begin(ev.first_step, ev.last_step)
        self.w.health.preview(self.w.settings.train_config(), ev.first_step)
        self.health_timer.start()

    @Slot(object)
    def _stepped(self, ev) -> None:
        self.w.health.add_step(ev.step, ev.grad_norm, ev.clipped)
        self._last_loss = ev.loss

    @Slot(object)
    def _ended(self, done) -> None:
        self.health_timer.stop()
        self._refresh_health(None if done is None else done.status)
        self.w.health.end()

    def _refresh_health(self, status=None) -> None:
        plot = self.w.plot
        tokenizer = self.w.session.tokenizer()
        vocab = tokenizer.vocab_size if tokenizer else 1
        self.w.health.refresh(plot.raw.y[: plot.raw.n], vocab, self.w.session.step(), status)

    @Slot()
    def _preview_schedule(self) -> None:
        if not self.w.session.training:
            self.w.health.preview(self.w.settings.train_config(), self.w.session.step())

    # -- attention ----------------------------------------------------------------------
    def attention_text(self) -> str:
        selected = self.w.generation.output.textCursor().selectedText()
        return selected or self.w.generation.prompt.text() or self.w.generation.text()

    @Slot()
    def show_attention(self) -> None:
        if not self.w.session.attention(self.attention_text()):
            self.w.show_error(NO_MODEL)

    @Slot(object)
    def _attention_ready(self, result) -> None:
        chars, maps, step = result
        self.w.attention.set_maps(chars, np.asarray(maps), step)

    @Slot(object)
    def _evaluated(self, ev) -> None:
        # refreshed from the latest weights during training, when someone is looking
        if self.w.attention.maps is not None and self.w.attention.isVisible():
            self.show_attention()

    # -- branching and the temperature sweep --------------------------------------------
    @Slot(int, str)
    def branch(self, position: int, char: str) -> None:
        """Replace the character at this position and continue generating from there."""
        prefix = self.w.generation.text()[:position] + char
        self.w.generation.prompt.setText(prefix)
        self.w.start_generation()

    @Slot()
    def start_sweep(self) -> None:
        w = self.w
        prompt = w.usable_prompt()
        if prompt is None:
            return
        w.sweep.begin(prompt)
        w.right_tabs.setCurrentWidget(w.sweep_box)
        w.generation.set_running(True)
        w.session.sweep(prompt, TEMPERATURES, w.generation.sample_config())

    @Slot(object)
    def _sweep_token(self, item) -> None:
        self.w.sweep.add(*item)

    @Slot()
    def _sweep_ended(self) -> None:
        self.w.generation.set_running(False)
        self.w.generationFinished.emit()
