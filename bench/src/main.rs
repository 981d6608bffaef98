//! ballast benchmark harness.
//!
//! Starts, one after another on loopback, etcd 3.5, etcd 3.4, ballast (--shards 1 and 2) and the
//! speed-of-light server (`sol`, storage-free), each with a fresh data dir under `--work-dir`, runs
//! the same workloads against each, and prints a markdown table (also written to bench/RESULTS.md).
//! See bench/README.md.
mod failover;
mod fresh;
mod k8s;
mod kv;
mod lease;
mod opts;
mod pauses;
mod restart;
mod results;
mod secure;
mod server;
mod suite;
mod targets;
mod watch;
mod writer;

/// mimalloc, as the server: with glibc's malloc the harness spent ~13% of its CPU in malloc and
/// free at 1000 clients, and the harness shares this host's CPUs with the server it measures.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match opts::parse_opts(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let command = results::command_line(&args);
    if o.build {
        targets::build_binaries();
    }
    if let Err(e) = std::fs::create_dir_all(&o.work_dir) {
        eprintln!(
            "bench: cannot create work dir {}: {e}",
            o.work_dir.display()
        );
        std::process::exit(1);
    }
    let targets = targets::targets(&o);
    let suite = suite::Suite::new(&o);
    let cx = results::Context::now(command);
    let mut texts = Vec::new();
    for round in 1..=o.rounds {
        if o.rounds > 1 {
            eprintln!("bench: round {round} of {}", o.rounds);
        }
        let rows = suite.run(&targets).await;
        let text = suite.text(&rows, &targets);
        println!("\n{}\n{}", text.tbl, text.nts);
        texts.push(text);
    }
    let text = suite::Text::of_rounds(texts);
    results::write(&o, &cx, &text);
}
