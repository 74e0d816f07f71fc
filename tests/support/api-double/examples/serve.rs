//! Runs the double by hand for poking at it with curl or kubectl:
//! `cargo run -p kube-api-double --example serve -- [PORT] [SEED.json ...]`
//! writes `./api-double.kubeconfig` and serves until killed.

use kube_api_double::{ApiDouble, Options};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let port = args.peek().and_then(|a| a.parse::<u16>().ok()).unwrap_or(0);
    if port != 0 {
        args.next();
    }
    let double = ApiDouble::start(Options {
        port,
        ..Options::default()
    })
    .await;
    for file in args {
        match double.seed_json_file(&file) {
            Ok(objs) => println!("seeded {} object(s) from {file}", objs.len()),
            Err(e) => eprintln!("cannot seed {file}: {e}"),
        }
    }
    if let Err(e) = double.write_kubeconfig("api-double.kubeconfig") {
        eprintln!("cannot write api-double.kubeconfig: {e}");
    }
    println!(
        "serving on {} (kubeconfig: ./api-double.kubeconfig)",
        double.url()
    );
    std::future::pending::<()>().await;
}
