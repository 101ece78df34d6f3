//! The benchmark on its own, for when the `metrofs` binary is not at hand:
//! `cargo run --release -p metrofs-bench --example bench -- nfs://127.0.0.1/export?...`.
//! Same arguments as `metrofs bench`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "metrofs-bench",
    about = "Drive an NFSv3 export and print what it sustains"
)]
struct Cli {
    #[command(flatten)]
    bench: metrofs_bench::BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    metrofs_bench::run(Cli::parse().bench).await
}
