//! Log output of `hark serve`: human-readable lines, or one JSON object per line for
//! log collectors (`--log-format json`). `HARK_LOG` filters either way, and also decides
//! which spans reach the OpenTelemetry exporter when traces are on.

use clap::ValueEnum;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the process-wide subscriber: logs to stderr, spans to `traces` if given.
pub fn init(format: LogFormat, traces: Option<&SdkTracerProvider>) {
    let filter = EnvFilter::try_from_env("HARK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let output = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let otel =
        traces.map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("hark")));
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .with(otel)
        .init();
}
