//! The README's library example, as a program: `cargo run -p firepit --example quickstart`.
//! (`crates/firepit/tests/readme.rs` checks that the README shows exactly these lines; rustfmt
//! leaves them as the README has them.)

#[tokio::main]
#[rustfmt::skip]
async fn main() -> Result<(), firepit::Error> {
    // README begin
    use firepit::{Firepit, VmConfig};

    let image = firepit::image::Image::open_default()?; // `firepit image build` puts it there
    let pool = Firepit::pool(VmConfig::from_image(&image))
        .cpus(1).memory_mb(256).console_enabled()
        .build(4).await?;                          // returns when all 4 are booted & ready
    let vm = pool.reserve().await?;                // FIFO-fair wait; try_reserve() fails at once
    let console = vm.console().await?;
    console.send("echo $((6*7))\n").await?;        // the console echoes the line: wait for
    console.read_until("42").await?;               // what only the output contains
    let r = vm.exec(["uname", "-r"]).await?;       // exit code, stdout, stderr via the guest agent
    println!("{}", r.stdout_lossy());
    let s = vm.status().await?;                    // Running / Paused / Exited(code)
    println!("{s:?}");
    drop(vm);                                      // destroyed; the pool boots a replacement
    pool.shutdown().await;                         // idempotent; no process or file left behind
    // README end
    Ok(())
}
