//! Suspend-cycle tests (placeholder until written).
