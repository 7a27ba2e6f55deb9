//! A parallel test runner over a pool of real VMs: N "tests" run at once, each on its own fresh
//! VM, each sends a command on the serial console and waits for `TEST_DONE`.
//!
//! ```sh
//! cargo run -p firepit --example test_runner -- 8    # after `firepit image build` (or scripts/demo)
//! ```
//!
//! The console echoes what is typed, so the command line itself must not contain the marker the
//! runner waits for: the shell computes it (`TEST_DONE-$((N+0))` prints `TEST_DONE-N`, which the
//! echoed line does not contain), as the result (`$((N*N))`) it checks.

use std::time::{Duration, Instant};

use firepit::{Firepit, VmConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tests: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(6);
    let image = firepit::image::Image::open_default()?;

    let started = Instant::now();
    let pool =
        Firepit::pool(VmConfig::from_image(&image)).cpus(1).memory_mb(256).console_enabled().build(2).await?;
    println!("pool of 2 ready in {:.1} s; running {tests} tests", started.elapsed().as_secs_f64());

    let mut runs = tokio::task::JoinSet::new();
    for test in 0..tests {
        let pool = pool.clone();
        runs.spawn(async move {
            let waited = Instant::now();
            let vm = pool.reserve().await?;
            let waited = waited.elapsed();
            let console = vm.console().await?;
            console
                .send(&format!("echo test-{test}: $(({test}*{test})) && echo TEST_DONE-$(({test}+0))\n"))
                .await?;
            let out =
                console.read_until_timeout(&format!("TEST_DONE-{test}"), Duration::from_secs(30)).await?;
            let passed = out.contains(&format!("test-{test}: {}", test * test));
            Ok::<_, firepit::Error>((test, vm.id().to_owned(), waited, passed))
            // dropping `vm` here destroys it; the pool boots a replacement for the next test
        });
    }
    let mut failed = 0;
    while let Some(result) = runs.join_next().await {
        let (test, vm, waited, passed) = result??;
        println!(
            "test {test:>2} on {vm}: {} (waited {:.2} s for a VM)",
            if passed { "ok" } else { "FAILED" },
            waited.as_secs_f64()
        );
        failed += usize::from(!passed);
    }
    pool.shutdown().await;
    println!("{} passed, {failed} failed in {:.1} s", tests - failed, started.elapsed().as_secs_f64());
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
