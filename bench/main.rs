//! Load generator for the durable pipeline (placeholder until the benchmark lands).
fn main() {}
