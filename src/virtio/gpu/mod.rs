//! virtio-gpu (placeholder)
