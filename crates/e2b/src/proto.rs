//! The envd message types, generated at build time from `proto/*.proto` (prost for the binary
//! encoding, pbjson for the proto3 JSON mapping).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `process.*`: the process service's messages.
pub mod process {
    include!(concat!(env!("OUT_DIR"), "/process.rs"));
    include!(concat!(env!("OUT_DIR"), "/process.serde.rs"));
}

/// `filesystem.*`: the filesystem service's messages.
pub mod filesystem {
    include!(concat!(env!("OUT_DIR"), "/filesystem.rs"));
    include!(concat!(env!("OUT_DIR"), "/filesystem.serde.rs"));
}
