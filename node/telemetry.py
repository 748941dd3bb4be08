"""OpenTelemetry traces and metrics for the node, with the exporter chosen by configuration.

``none`` (the default) installs real providers with no exporter, so spans and metrics are still
created and can be read in tests; ``console`` prints them; ``otlp`` sends them to a collector.
Whatever the exporter, the metrics can be scraped in Prometheus' text format (``GET /metrics``):
each node has a registry of its own (``Telemetry.prometheus``), so several nodes in one process
(the tests) never share one.
Attribute values go through ``safe_attributes``: embeddings, images, keys and personal names are
never recorded, whatever a caller passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from prometheus_client import CollectorRegistry, generate_latest

from protocol.errors import ConfigurationError

__all__ = ["EXPORTERS", "Telemetry", "safe_attributes", "setup_telemetry"]

EXPORTERS = ("none", "console", "otlp")

_FORBIDDEN_ATTRIBUTE_WORDS = (
    "embedding",
    "vector",
    "image",
    "crop",
    "face",
    "key",
    "secret",
    "password",
    "token",
    "name",
)

AttributeValue = str | bool | int | float


@dataclass(frozen=True)
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    prometheus: CollectorRegistry | None = None

    def prometheus_text(self) -> bytes:
        """Every metric now, in Prometheus' text exposition format (observable gauges are read
        by this call: run it off the event loop)."""
        if self.prometheus is None:
            return b""
        return bytes(generate_latest(self.prometheus))

    def tracer(self, name: str) -> trace.Tracer:
        return self.tracer_provider.get_tracer(name)

    def meter(self, name: str) -> metrics.Meter:
        return self.meter_provider.get_meter(name)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def safe_attributes(attributes: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
    """Drop any attribute whose name suggests biometric, secret or personal content."""
    return {
        key: value
        for key, value in attributes.items()
        if not any(word in key.lower() for word in _FORBIDDEN_ATTRIBUTE_WORDS)
    }


def setup_telemetry(
    *,
    node_id: str,
    exporter: str = "none",
    otlp_endpoint: str | None = None,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> Telemetry:
    """Build tracer and meter providers for one node (not installed globally: several nodes may share a process)."""
    if exporter not in EXPORTERS:
        raise ConfigurationError(f"telemetry exporter {exporter!r} is not one of {', '.join(EXPORTERS)}")
    resource = Resource.create({"service.name": "watchnet-node", "watchnet.node_id": node_id})
    tracer_provider = TracerProvider(resource=resource)
    readers: list[MetricReader] = [metric_reader] if metric_reader is not None else []
    prometheus = CollectorRegistry(auto_describe=False)
    readers.append(PrometheusMetricReader(disable_target_info=True, registry=prometheus))
    if span_exporter is not None:
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    if exporter == "console":
        tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        if not otlp_endpoint:
            raise ConfigurationError("telemetry exporter 'otlp' needs telemetry.otlp_endpoint in the config")
        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint}/v1/traces"))
        )
        readers.append(
            PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{otlp_endpoint}/v1/metrics"))
        )
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    return Telemetry(tracer_provider, meter_provider, prometheus)
