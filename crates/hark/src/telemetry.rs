//! OpenTelemetry traces, off unless `[telemetry] otlp_endpoint` is configured: spans of
//! HTTP requests and engine jobs go to an OTLP/HTTP collector (protobuf over plain HTTP,
//! e.g. a collector on the same host at `http://127.0.0.1:4318`).

use anyhow::Context;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// Builds the exporter pipeline for a collector at `endpoint` (its base URL; spans are
/// posted to `{endpoint}/v1/traces`). Spans are batched and sent from the SDK's own
/// thread, so a slow collector never holds up a request.
pub fn tracer_provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .build()
        .with_context(|| format!("configuring the OTLP exporter for {url}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("hark").build())
        .build())
}
