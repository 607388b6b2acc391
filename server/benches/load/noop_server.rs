//! The baseline of the HTTP load scripts: an actix-web server that answers every request
//! `200` with an empty body and does nothing else, served the way `gatehouse serve` serves
//! verify (same framework, same number of workers, keep-alive). `verify.sh` and `nginx.sh`
//! print Gatehouse's throughput as a ratio of this one's, measured in the same run.
//!
//!   cargo run --release -p gatehouse --example load-noop-server -- 127.0.0.1:9000 [workers]
#![allow(
    clippy::expect_used,
    reason = "a load tool's setup reports failure by panicking"
)]

use actix_web::{App, HttpResponse, HttpServer, web};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9000".into());
    // As many workers as `gatehouse serve` runs (actix's default) unless told otherwise.
    let workers: Option<usize> = args
        .next()
        .map(|w| w.parse().expect("workers must be a number"));
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new().default_service(web::to(|| async { HttpResponse::Ok().finish() }))
        });
        let server = match workers {
            Some(n) => server.workers(n),
            None => server,
        };
        server.bind(addr)?.run().await
    })
}
