//! One shape, every way in, one error: a shape of 32 MiB or 65 vCPUs is refused by the library's
//! `Firepit::pool(..).build()`, by the daemon's config file and by `PUT /v1/shapes/{name}` (so by
//! the client and the SDKs) with the same `InvalidShape` — the same type where Rust sees it, the
//! same message everywhere.

use std::path::Path;

use firepit::{Error, Firepit, VmConfig};
use firepit_client::Method;
use firepit_daemon::config::{Config, ConfigError};
use firepit_daemon::test_daemon::{TestDaemon, error_code};
use firepit_shape::InvalidShape;

/// The library's error for a pool of `cpus` vCPUs and `memory_mb` MiB on `image`.
async fn library_error(image: &Path, cpus: u32, memory_mb: u64) -> InvalidShape {
    let config = VmConfig::new(image.join("vmlinuz"), image);
    let built = Firepit::pool(config).cpus(cpus).memory_mb(memory_mb).build(1).await;
    match built {
        Err(Error::InvalidShape(invalid)) => invalid,
        Err(other) => panic!("{cpus} vCPUs, {memory_mb} MiB: not an InvalidShape: {other}"),
        Ok(pool) => {
            pool.shutdown().await;
            panic!("{cpus} vCPUs, {memory_mb} MiB: the library built the pool")
        }
    }
}

#[tokio::test]
async fn a_shape_out_of_bounds_gets_the_same_error_from_the_library_the_config_file_and_the_api() {
    let daemon = TestDaemon::start().await;
    let image = daemon.dir.path();
    for (cpus, memory_mb, key) in [(1, 32, "memory_mb"), (65, 256, "cpus")] {
        let library = library_error(image, cpus, memory_mb).await;
        assert_eq!((library.shape.as_str(), library.key.as_str()), (firepit::POOL_SHAPE, key));
        let message = library.to_string();

        let toml = format!(
            "[[shape]]\nname = \"{}\"\nimage = {image:?}\ncpus = {cpus}\nmemory_mb = {memory_mb}\n",
            firepit::POOL_SHAPE
        );
        match Config::from_toml(&toml, Path::new("firepit.toml")) {
            Err(ConfigError::InvalidShape(config)) => assert_eq!(config, library, "the config file's error"),
            other => panic!("the config file with {key} out of bounds: {other:?}"),
        }

        let body = format!(r#"{{"image":{image:?},"cpus":{cpus},"memory_mb":{memory_mb}}}"#);
        let path = format!("/v1/shapes/{}", firepit::POOL_SHAPE);
        let response = daemon.raw(Method::PUT, &path, &body).await;
        assert_eq!(response.status, 422, "{body}: {}", response.text());
        assert_eq!(error_code(&response), "invalid_shape");
        let answer: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(answer["message"], message.as_str(), "the API's message");

        let spec = firepit_shape::ShapeSpec { cpus, memory_mb, ..firepit_shape::ShapeSpec::new("", image) };
        let client = daemon.client().register_shape(firepit::POOL_SHAPE, &spec).await.unwrap_err();
        assert!(client.to_string().contains(&message), "the client's error: {client}");
    }
    daemon.assert_healthy().await;
    daemon.stop().await;
}
