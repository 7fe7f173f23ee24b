//! Rendering a typical in-app feed step, next to a baseline that builds the same string
//! with `format!` (the cost of producing the output at all).
//!
//! `cargo bench -p hark-template --bench render`

use criterion::{criterion_group, criterion_main, Criterion};
use hark_template::{markdown_to_html, RenderContext, Renderer};
use serde_json::json;
use std::hint::black_box;

fn render(c: &mut Criterion) {
    let renderer = Renderer::new().expect("renderer");
    let vars = json!({
        "recipient": {"id": "u1", "name": "Ada Lovelace", "email": "ada@example.com"},
        "actor": {"id": "u2", "name": "Charles Babbage"},
        "data": {"project": "Analytical Engine", "comment": "Looks great", "url": "https://example.com/p/1"},
        "vars": {}, "tenant": null, "workflow": {"key": "comment-created"},
    });
    let template =
        "**{{ actor.name }}** commented on {{ data.project }}: {{ data.comment | truncate: 40 }}";
    let mut group = c.benchmark_group("feed step");
    group.bench_function("baseline: format! + markdown", |b| {
        b.iter(|| {
            let text = format!(
                "**{}** commented on {}: {}",
                black_box("Charles Babbage"),
                black_box("Analytical Engine"),
                black_box("Looks great")
            );
            markdown_to_html(&text)
        })
    });
    group.bench_function("liquid context + render + markdown", |b| {
        b.iter(|| {
            let ctx = RenderContext::from_json(black_box(&vars)).expect("context");
            let text = renderer.render(black_box(template), &ctx).expect("render");
            markdown_to_html(&text)
        })
    });
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
