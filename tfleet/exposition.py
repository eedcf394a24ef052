"""The text every daemon serves on /metrics: prometheus_client's ``generate_latest``, byte
for byte, with a fast path for the gauge families that hold one value per model.

At 100,000 models the controller's three per-model gauges are 300,000 series, and
``generate_latest`` formats each sample through a general routine (sorting its labels,
escaping each value, formatting its float): 2.1-2.8 s of one core for a 19 MB answer,
measured with the controller's own metrics (``python -m bench.metrics_scrape``; ~0.18 s now). The controller is one interpreter: a scrape
took that time from the passes, and bench/scale's 10 % host loss is a ~10 s window in
which Prometheus scrapes once or more. A ``RenderedGaugeFamily`` writes its lines from
its label tuples directly (one format per sample, escaping only values that need it, one
number formatting per distinct int: the per-model gauges hold counts and 0/1 flags).

Everything else (counters, histograms, the few plain gauges) still goes through
``generate_latest``, one family at a time. ``registry.collect()`` users (tests,
``get_sample_value``) see a normal family: its samples are built when they are read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString as _untyped_go_text


_LEGACY_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LEGACY_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class RenderedGaugeFamily(GaugeMetricFamily):
    """A gauge family of (label values, value) pairs that writes its own exposition text.

    ``samples`` is built on first read (``registry.get_sample_value`` and the like), never
    by ``generate`` (which calls ``exposition``)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], values: Sequence[tuple[tuple[str, ...], float]]) -> None:
        if not _LEGACY_NAME.match(name) or not all(_LEGACY_LABEL.match(label) for label in labelnames):
            raise ValueError(f"{name} {tuple(labelnames)}: a rendered family needs plain metric and label names")
        self._built: list[Sample] | None = None
        super().__init__(name, documentation, labels=labelnames)
        self._labelnames = tuple(labelnames)
        self._values = values

    @property
    def samples(self) -> list[Sample]:
        if self._built is None:
            self._built = [Sample(self.name, dict(zip(self._labelnames, labels, strict=True)), float(value)) for labels, value in self._values]
        return self._built

    @samples.setter
    def samples(self, value: list[Sample]) -> None:  # (Metric.__init__ sets it empty)
        self._built = None if not value else list(value)

    def exposition(self) -> bytes:
        """What ``generate_latest`` writes for this family (a test compares the two)."""
        header = generate_latest(_Only(GaugeMetricFamily(self.name, self.documentation, labels=self._labelnames)))
        # generate_latest sorts a sample's labels by name
        order = sorted(range(len(self._labelnames)), key=self._labelnames.__getitem__)
        heads = [f'{self._labelnames[i]}="' for i in order]
        text = _number_texts()
        lines = [header.decode()]
        append, name = lines.append, self.name
        # (the per-model gauges' shapes, one and two labels, written without the general join)
        if len(order) == 1:
            head = f"{name}{{{heads[0]}"
            for (label,), value in self._values:
                # (_escaped, inline: a model name needs no escaping, and this runs per model)
                if "\\" in label or "\n" in label or '"' in label:
                    label = _escaped(label)
                append(f'{head}{label}"}} {text(value)}\n')
        elif len(order) == 2:
            first, second = order
            head, middle = f"{name}{{{heads[0]}", f'",{heads[1]}'
            for labels, value in self._values:
                append(f'{head}{_escaped(labels[first])}{middle}{_escaped(labels[second])}"}} {text(value)}\n')
        else:
            for labels, value in self._values:
                pairs = '",'.join(head + _escaped(labels[i]) for head, i in zip(heads, order, strict=True))
                append(f'{name}{{{pairs}"}} {text(value)}\n')
        return "".join(lines).encode()


def _go_text(value: float) -> str:
    """prometheus_client's text of a sample's value (untyped there)."""
    text: str = _untyped_go_text(value)  # type: ignore[no-untyped-call]
    return text


def _number_texts() -> Callable[[float], str]:
    """prometheus_client's number text (floatToGoString), remembered per int value (counts
    and 0/1 flags repeat); a float is formatted each time (0.0 == -0.0, but they read
    differently)."""
    texts: dict[int, str] = {}

    def text(value: float) -> str:
        if type(value) is not int:
            return _go_text(value)
        known = texts.get(value)
        if known is None:
            known = texts[value] = _go_text(value)
        return known

    return text


def _escaped(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


class _Only:
    """A collector of given families (``generate_latest`` takes anything with ``collect``)."""

    def __init__(self, *metrics: Metric) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


class _Registry(Protocol):
    def collect(self) -> Iterable[Metric]: ...


def generate(registry: _Registry) -> bytes:
    """The registry's exposition text: ``generate_latest(registry)``, with each
    ``RenderedGaugeFamily`` writing its own lines."""
    parts: list[bytes] = []
    plain: list[Metric] = []
    for metric in registry.collect():
        if isinstance(metric, RenderedGaugeFamily):
            if plain:
                parts.append(generate_latest(_Only(*plain)))
                plain = []
            parts.append(metric.exposition())
        else:
            plain.append(metric)
    if plain:
        parts.append(generate_latest(_Only(*plain)))
    return b"".join(parts)


__all__ = ["RenderedGaugeFamily", "generate"]
