//! firepit-agent: serves the host's requests on the virtio-serial port (being written).

fn main() {
    eprintln!("firepit-agent: not yet implemented");
    std::process::exit(1);
}
