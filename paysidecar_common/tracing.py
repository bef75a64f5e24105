"""Tracer and meter providers for one process, chosen by the standard OTEL_*
variables (DESIGN §8). The sidecar and the gateway each call `configure()` once,
from main(); tests call it once per session with their own exporter and reader.

Variables read here (the SDK's exporters read the rest themselves:
OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, _TIMEOUT, OTEL_BSP_*, ...):

- OTEL_TRACES_EXPORTER   otlp | console | none, comma-separated. Default none:
                         unlike the OTel default (otlp), nothing is set up unless
                         asked for, so tracing costs nothing by default.
- OTEL_METRICS_EXPORTER  otlp | console | none. Default none (Jaeger, the usual
                         local viewer, accepts no metrics).
- OTEL_EXPORTER_OTLP_PROTOCOL (or _TRACES_ / _METRICS_PROTOCOL)  grpc | http/protobuf
- OTEL_SERVICE_NAME      default given by the process (paysidecar, paysidecar-gateway)
- OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG
- OTEL_SDK_DISABLED      true: nothing at all
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated, Literal

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Exporter = Literal["otlp", "console", "none"]
OtlpProtocol = Literal["grpc", "http/protobuf"]
SamplerName = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]


class TracingSettings(BaseSettings):
    # Aliases are the variables' names, so a bad value is reported under the name the user set.
    model_config = SettingsConfigDict(
        alias_generator=lambda field: f"OTEL_{field.upper()}", populate_by_name=True, extra="ignore"
    )

    sdk_disabled: bool = False
    service_name: str | None = None
    traces_exporter: Annotated[tuple[Exporter, ...], NoDecode] = ("none",)
    metrics_exporter: Annotated[tuple[Exporter, ...], NoDecode] = ("none",)
    exporter_otlp_protocol: OtlpProtocol = "grpc"
    exporter_otlp_traces_protocol: OtlpProtocol | None = None
    exporter_otlp_metrics_protocol: OtlpProtocol | None = None
    traces_sampler: SamplerName = "parentbased_always_on"
    traces_sampler_arg: float = Field(1.0, ge=0.0, le=1.0)

    @field_validator("traces_exporter", "metrics_exporter", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip().lower() for part in value.split(",") if part.strip()) or ("none",)
        return value

    @field_validator("traces_sampler", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


@dataclass(frozen=True)
class Tracing:
    """The providers this process installed; None where that signal is off."""

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None

    @property
    def enabled(self) -> bool:
        """Traces or metrics are on: the process should instrument itself."""
        return self.tracer_provider is not None or self.meter_provider is not None

    def shutdown(self) -> None:
        """Export what is buffered, then stop (blocks up to the exporters' timeouts)."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def configure(
    settings: TracingSettings,
    default_service_name: str,
    *,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> Tracing:
    """Install the process-wide providers the settings ask for.

    `span_exporter` (exported synchronously, for tests) and `metric_reader` are
    added to what the settings configure. OTel accepts one global provider per
    process: call this once.
    """
    if settings.sdk_disabled:
        return Tracing()
    resource = Resource.create({SERVICE_NAME: settings.service_name or default_service_name})

    processors = [BatchSpanProcessor(exporter) for exporter in _span_exporters(settings)]
    if span_exporter is not None:
        processors.append(SimpleSpanProcessor(span_exporter))
    tracer_provider = None
    if processors:
        tracer_provider = TracerProvider(resource=resource, sampler=_sampler(settings))
        for processor in processors:
            tracer_provider.add_span_processor(processor)
        trace.set_tracer_provider(tracer_provider)

    readers: list[MetricReader] = [PeriodicExportingMetricReader(e) for e in _metric_exporters(settings)]
    if metric_reader is not None:
        readers.append(metric_reader)
    meter_provider = None
    if readers:
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        metrics.set_meter_provider(meter_provider)
    return Tracing(tracer_provider, meter_provider)


# Exporters are imported only when asked for: the OTLP ones pull in a lot.


def _span_exporters(settings: TracingSettings) -> list[SpanExporter]:
    protocol = settings.exporter_otlp_traces_protocol or settings.exporter_otlp_protocol
    return [_span_exporter(name, protocol) for name in dict.fromkeys(settings.traces_exporter) if name != "none"]


def _span_exporter(name: Exporter, protocol: OtlpProtocol) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # stderr: stdout carries the process's ready line, which launchers parse.
        return ConsoleSpanExporter(out=sys.stderr)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def _metric_exporters(settings: TracingSettings) -> list[MetricExporter]:
    protocol = settings.exporter_otlp_metrics_protocol or settings.exporter_otlp_protocol
    return [_metric_exporter(name, protocol) for name in dict.fromkeys(settings.metrics_exporter) if name != "none"]


def _metric_exporter(name: Exporter, protocol: OtlpProtocol) -> MetricExporter:
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter(out=sys.stderr)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

    return HttpExporter()


def _sampler(settings: TracingSettings) -> Sampler:
    name, ratio = settings.traces_sampler, settings.traces_sampler_arg
    root = {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF}.get(name.removeprefix("parentbased_"))
    if root is None:
        root = TraceIdRatioBased(ratio)
    return ParentBased(root) if name.startswith("parentbased_") else root
