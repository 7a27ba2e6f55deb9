//! Guest image builder (being written).
