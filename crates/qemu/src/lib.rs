//! QEMU provider (being written).
